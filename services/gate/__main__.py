"""`ptf-gate` / `python -m services.gate`: run the gate service until SIGTERM."""

from services.gate.service import DEFINITION
from services.runtime.server import run_service


def main() -> None:
    run_service(DEFINITION)


if __name__ == "__main__":
    main()
