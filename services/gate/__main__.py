"""`ptf-gate` / `python -m services.gate`: run the gate service until SIGTERM.

ptf-gate            serve until SIGTERM
ptf-gate migrate    apply the gate service's migrations and exit
"""

import sys
from collections.abc import Sequence

from services.gate.service import DEFINITION
from services.runtime.migrate import run_migrations
from services.runtime.server import run_service


def main(argv: Sequence[str] | None = None) -> None:
    if list(sys.argv[1:] if argv is None else argv) == ["migrate"]:
        raise SystemExit(run_migrations("gate", DEFINITION.migrations))
    run_service(DEFINITION)


if __name__ == "__main__":
    main()
