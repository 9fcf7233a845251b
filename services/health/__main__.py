"""`ptf-health` / `python -m services.health`: run the health service until SIGTERM."""

from services.health.service import DEFINITION
from services.runtime.server import run_service


def main() -> None:
    run_service(DEFINITION)


if __name__ == "__main__":
    main()
