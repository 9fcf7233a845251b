"""`ptf-admin keys …`: create, revoke and list the API keys of every service.

    ptf-admin keys create --role tenant|admin|service --operator NAME [--tenant T]… [--label L]
                                        store a new key; prints it once
    ptf-admin keys revoke KEY_ID        revoke a key by its id (>= 8 hex characters)
    ptf-admin keys list                 every key's id, role, operator, tenants and status

Needs `DATABASE_URL` (the database every service shares for its keys); the key
table is created when missing. Usage errors exit 64 (sysexits EX_USAGE), an
unknown key id 1, a missing `DATABASE_URL` 78.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import NoReturn, TypeVar

import asyncpg

from services.runtime.config import AppConfig
from services.runtime.db import apply_migration_sets, create_pool
from services.runtime.errors import InvalidInput, PtfError
from services.runtime.keys.principal import Role, validate_tenant_id
from services.runtime.keys.store import (
    KEY_MIGRATIONS,
    KeyInfo,
    KeyStore,
    grant_problem,
    key_id_of,
    validate_key_id,
    validate_operator,
)
from services.runtime.logs import configure_logging
from services.runtime.server import EXIT_CONFIG, load_validated_config

EXIT_FAILURE = 1
EXIT_USAGE = 64
_R = TypeVar("_R")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _argument(validate: Callable[[str], str]) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        try:
            return validate(raw)
        except PtfError as exc:
            raise argparse.ArgumentTypeError(f"{raw!r}: {exc.message}") from None

    return parse


def _parser() -> _Parser:
    parser = _Parser(prog="ptf-admin", description="ptf-admin operator commands")
    commands = parser.add_subparsers(dest="command", required=True, metavar="{keys}")
    keys = commands.add_parser("keys", help="create, revoke and list API keys")
    key_commands = keys.add_subparsers(
        dest="keys_command", required=True, metavar="{create,revoke,list}"
    )
    create = key_commands.add_parser("create", help="store a new API key and print it once")
    create.add_argument("--role", choices=[role.value for role in Role], required=True)
    create.add_argument(
        "--operator",
        required=True,
        type=_argument(validate_operator),
        help="who holds the key (a person, CI job or service); recorded in audit rows",
    )
    create.add_argument(
        "--tenant",
        action="append",
        default=[],
        type=_argument(validate_tenant_id),
        help="granted tenant (repeat); a tenant key needs one, admin and service keys take none",
    )
    create.add_argument("--label", default="", help="a note shown by `keys list`")
    revoke = key_commands.add_parser("revoke", help="revoke a key by its key id")
    revoke.add_argument(
        "key_id",
        type=_argument(validate_key_id),
        help="the id printed by `keys create` / `keys list`, or its first 8+ characters",
    )
    key_commands.add_parser("list", help="every key's id, role, operator, tenants and status")
    return parser


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The arguments, a role/tenant mismatch refused here: before config or database."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.keys_command == "create":
        args.role = Role(args.role)
        problem = grant_problem(args.role, args.tenant)
        if problem:
            parser.exit(EXIT_USAGE, f"ptf-admin keys create: error: {problem}\n")
    return args


async def _with_store(config: AppConfig, work: Callable[[KeyStore], Awaitable[_R]]) -> _R:
    pool: asyncpg.Pool = await create_pool(config.database_url, max_size=1)
    try:
        await apply_migration_sets(pool, (KEY_MIGRATIONS,))
        return await work(KeyStore(pool, config.thresholds.Access))
    finally:
        await pool.close()


def _timestamp(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if moment else "-"


def _create(config: AppConfig, args: argparse.Namespace) -> int:
    role: Role = args.role

    async def create(store: KeyStore) -> str:
        return await store.create(role, args.tenant, args.operator, args.label)

    raw = asyncio.run(_with_store(config, create))
    granted = ", ".join(sorted(set(args.tenant))) if role is Role.TENANT else "every tenant"
    print(raw)
    print(
        f"created {role} key {key_id_of(raw)} for {args.operator} ({granted});"
        " the key above is shown once and cannot be recovered",
        file=sys.stderr,
    )
    return 0


def _revoke(config: AppConfig, key_id: str) -> int:
    try:
        info = asyncio.run(_with_store(config, lambda store: store.revoke(key_id)))
    except InvalidInput as exc:  # a prefix of several keys
        print(f"ptf-admin keys revoke: error: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    if info is None:
        print(f"ptf-admin keys revoke: no API key has the id {key_id}", file=sys.stderr)
        return EXIT_FAILURE
    when = _timestamp(info.revoked_at)
    print(f"revoked {info.role} key {info.key_id} of {info.operator} at {when}")
    print(
        "running services may accept it from their cache for up to"
        f" {config.thresholds.Access.KEY_CACHE_SECONDS:g}s more",
        file=sys.stderr,
    )
    return 0


def key_table(keys: Sequence[KeyInfo]) -> list[str]:
    """Aligned columns; tenants of admin and service keys show as `*` (no tenant id can be `*`)."""
    rows = [("KEY ID", "ROLE", "STATUS", "CREATED", "REVOKED", "OPERATOR", "TENANTS", "LABEL")]
    rows += [
        (
            k.key_id,
            k.role.value,
            "revoked" if k.revoked_at else "active",
            _timestamp(k.created_at),
            _timestamp(k.revoked_at),
            k.operator,
            ",".join(k.tenants) if k.role is Role.TENANT else "*",
            k.label,
        )
        for k in keys
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return [
        "  ".join(
            [*(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)), row[-1]]
        ).rstrip()
        for row in rows
    ]


def main(argv: Sequence[str] | None = None) -> None:
    args = _parse_args(argv)
    configure_logging("admin")
    config = load_validated_config("admin")
    if not config.database_url:
        print("DATABASE_URL must be set", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG)
    if args.keys_command == "create":
        raise SystemExit(_create(config, args))
    if args.keys_command == "revoke":
        raise SystemExit(_revoke(config, args.key_id))
    keys = asyncio.run(_with_store(config, lambda store: store.list_keys()))
    print("\n".join(key_table(keys)))
    raise SystemExit(0)


if __name__ == "__main__":
    main()
