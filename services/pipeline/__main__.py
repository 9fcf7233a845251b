"""`ptf-pipeline` / `python -m services.pipeline`: run the pipeline service until SIGTERM."""

from services.pipeline.service import DEFINITION
from services.runtime.server import run_service


def main() -> None:
    run_service(DEFINITION)


if __name__ == "__main__":
    main()
