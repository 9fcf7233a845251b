"""gatectl's command line: every command, flag and environment default in one parser."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import NoReturn

from services.gate.cli.exits import USAGE, CliExit
from services.gate.cli.rollback import APPROVED_ANNOTATION, KILL_SWITCH_DEPLOYMENTS

DEFAULT_GATE = "127.0.0.1:50051"
KEY_ENV = "GATECTL_KEY"


class Parser(argparse.ArgumentParser):
    """argparse exits 2 on a usage error, which gatectl reserves for BLOCK: exit 64 instead."""

    def error(self, message: str) -> NoReturn:
        """Report a usage error as exit 64."""
        self.print_usage()
        raise CliExit(USAGE, message)


def _positive(kind: Callable[[str], int | float]) -> Callable[[str], int | float]:
    def convert(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{text!r} must be positive")
        return value

    return convert


def _connection(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--gate",
        default=os.environ.get("PTF_GATE_ADDR", DEFAULT_GATE),
        help="gate gRPC address host:port (env PTF_GATE_ADDR, default %(default)s)",
    )
    parser.add_argument(
        "--timeout", type=_positive(float), default=30.0, help="RPC deadline in seconds"
    )
    parser.add_argument(
        "--key",
        "--admin-key",
        dest="key",
        default=os.environ.get(KEY_ENV, ""),
        help=f"API key: an operator's admin key, or a CI/service key for preflight, check and "
        f"watch (env {KEY_ENV}); audit rows name the key's operator",
    )


def _preflight_args(parser: argparse.ArgumentParser) -> None:
    _connection(parser)
    parser.add_argument("--spec", required=True, help="release spec YAML file")
    parser.add_argument(
        "--fact", action="append", metavar="NAME=VALUE", help="e.g. tests_passed=true (repeat)"
    )
    parser.add_argument(
        "--override-token", help="one-time override token (or env GATECTL_OVERRIDE_TOKEN)"
    )
    parser.add_argument("--request-id", help="retry-safe id: the same id gets the first answer")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--metrics-dir", help="add this run to the metric store there and write a .prom file"
    )


def build_parser() -> Parser:
    """The gatectl argument parser with every command."""
    parser = Parser(
        prog="gatectl",
        description="Release gate client: ask the gate about a release, audit it, watch it.",
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    preflight = commands.add_parser("preflight", help="evaluate a release spec")
    _preflight_args(preflight)

    check = commands.add_parser("check", help="enforcement check: ALLOW/DENY, audited")
    _preflight_args(check)

    override = commands.add_parser("override", help="request or show one-time overrides")
    override_commands = override.add_subparsers(
        dest="override_command", required=True, parser_class=Parser
    )
    request = override_commands.add_parser("request", help="issue an override token")
    _connection(request)
    request.add_argument("--spec", required=True, help="release spec YAML file")
    request.add_argument(
        "--reason", action="append", required=True, help="reason covered, e.g. S1_RATE_HIGH"
    )
    request.add_argument("--justification", required=True)
    request.add_argument("--json", action="store_true")
    show = override_commands.add_parser("show", help="state and history of an override")
    _connection(show)
    which = show.add_mutually_exclusive_group(required=True)
    which.add_argument("--token-hash", help="SHA-256 of the token")
    which.add_argument("--token", help="the token itself (hashed locally, never sent)")
    show.add_argument("--json", action="store_true")

    audit = commands.add_parser("audit", help="read and verify the audit trail")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True, parser_class=Parser)
    tail = audit_commands.add_parser("tail", help="newest audit rows")
    _connection(tail)
    tail.add_argument("--limit", type=_positive(int), default=20)
    tail.add_argument("--release")
    tail.add_argument("--json", action="store_true")
    verify = audit_commands.add_parser("verify", help="recompute the hash chain (exit 2: tampered)")
    _connection(verify)
    verify.add_argument("--page-size", type=_positive(int), default=500)
    verify.add_argument("--json", action="store_true")

    watch = commands.add_parser(
        "watch", help="stream live gate decisions (each a live envelope; drop warnings too)"
    )
    _connection(watch)
    watch.add_argument("--release")
    watch.add_argument("--count", type=_positive(int), help="stop after this many decisions")
    watch.add_argument("--json", action="store_true", help="one envelope as JSON per line")

    post = commands.add_parser(
        "post-deploy",
        help="after a deploy: readiness, smoke invoices, system health, feedback (exit 0-4)",
        description=POST_DEPLOY_DESCRIPTION,
    )
    post.add_argument(
        "--health-url",
        default=os.environ.get("PTF_HEALTH_URL", "http://127.0.0.1:8084"),
        help="health service HTTP base URL (env PTF_HEALTH_URL)",
    )
    post.add_argument(
        "--api-url",
        default=os.environ.get("PTF_API_BASE_URL", "http://127.0.0.1:8083"),
        help="pipeline HTTP base URL (env PTF_API_BASE_URL)",
    )
    post.add_argument(
        "--api-key",
        default=os.environ.get("PTF_API_KEY", ""),
        help="tenant API key for the pilot tenant (env PTF_API_KEY)",
    )
    post.add_argument(
        "--admin-key",
        default=os.environ.get("PTF_ADMIN_KEY", ""),
        help="admin key (env PTF_ADMIN_KEY)",
    )
    post.add_argument("--tenant", default="pilot")
    post.add_argument("--timeout", type=_positive(float), default=30.0)
    post.add_argument("--json", action="store_true")

    _rollout_guard(
        commands.add_parser(
            "rollout-guard",
            help="watch a rollout through the gate; on BLOCK roll back to the approved revision",
            description=ROLLOUT_GUARD_DESCRIPTION,
        )
    )
    return parser


POST_DEPLOY_DESCRIPTION = (
    "Checks a freshly deployed system in four steps and prints each: (1) the health "
    "service's /health/ready says ready; (2) the three smoke invoices, submitted to the "
    "pilot tenant through the pipeline API, give their expected results; (3) the pipeline's "
    "/admin/system-health answers; (4) its /admin/feedback-stats answers. Exit 0 all passed, "
    "1 not ready, 2 smoke failed (roll back for 1 and 2), 3 feedback failed, 4 only system "
    "health failed (3 and 4: investigate, do not roll back)."
)

ROLLOUT_GUARD_DESCRIPTION = (
    "Asks the gate every --interval seconds. On RELEASE_OK once the rollout is complete, "
    "records the running revision on the Deployment (annotation "
    f"{APPROVED_ANNOTATION}) and exits 0. On RELEASE_BLOCK: kubectl rollout undo "
    "--to-revision=<recorded revision>, then PILOT_ENABLED=false on every "
    "--kill-switch-deployment, then kubectl rollout status; exits 2, or 70 when the "
    "rollback is incomplete. HOLD and an unreachable gate never touch the Deployment "
    "(exit 1 / 69 after --max-checks; 1 also when the gate says OK but the rollout has not "
    "finished)."
)


def _rollout_guard(guard: argparse.ArgumentParser) -> None:
    _connection(guard)
    guard.add_argument("--deployment", required=True, help="the Deployment being rolled out")
    guard.add_argument("--namespace", help="its namespace (default: kubectl's context)")
    guard.add_argument("--spec", required=True, help="release spec YAML file")
    guard.add_argument("--fact", action="append", metavar="NAME=VALUE")
    guard.add_argument("--override-token")
    guard.add_argument("--interval", type=_positive(float), default=30.0, help="seconds")
    guard.add_argument("--max-checks", type=_positive(int), help="give up after N checks")
    guard.add_argument("--kubectl", default="kubectl", help="kubectl binary (default: on PATH)")
    guard.add_argument(
        "--kill-switch-deployment",
        action="append",
        metavar="NAME",
        help="a Deployment that reads PILOT_ENABLED, set to false on BLOCK (repeat; default: "
        f"{', '.join(KILL_SWITCH_DEPLOYMENTS)})",
    )
    guard.add_argument(
        "--good-revision",
        type=_positive(int),
        metavar="N",
        help="revision to roll back to when no gate-approved revision is recorded "
        "(default: the one before the current revision)",
    )
    guard.add_argument(
        "--rollout-timeout",
        type=_positive(float),
        default=300.0,
        metavar="SECONDS",
        help="how long the rollback's kubectl rollout status waits (default %(default)s)",
    )
    guard.set_defaults(request_id=None)
