"""`ptf-health` / `python -m services.health`: run the health service until SIGTERM.

ptf-health            serve until SIGTERM
ptf-health migrate    validate the config and exit: health owns no tables, so the
                      migration job's step applies nothing (it stays a config check)
"""

import sys
from collections.abc import Sequence

from services.health.service import DEFINITION
from services.runtime.migrate import run_migrations
from services.runtime.server import run_service


def main(argv: Sequence[str] | None = None) -> None:
    if list(sys.argv[1:] if argv is None else argv) == ["migrate"]:
        raise SystemExit(run_migrations("health", DEFINITION.migrations))
    run_service(DEFINITION)


if __name__ == "__main__":
    main()
