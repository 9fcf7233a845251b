"""`ptf-telemetry` / `python -m services.telemetry`: run the telemetry service until SIGTERM."""

from services.runtime.server import run_service
from services.telemetry.service import DEFINITION


def main() -> None:
    run_service(DEFINITION)


if __name__ == "__main__":
    main()
