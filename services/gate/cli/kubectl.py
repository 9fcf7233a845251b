"""kubectl as gatectl runs it: every command printed with its output and outcome.

An operator reading a rollback's output must be able to tell exactly what was done
to the cluster, so nothing here runs kubectl silently.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
MISSING_BINARY = 127


@dataclass(frozen=True)
class Outcome:
    """One kubectl run: exit code and combined output."""

    code: int
    output: str

    @property
    def ok(self) -> bool:
        """True when kubectl exited 0."""
        return self.code == 0


class Kubectl:
    """A kubectl binary bound to one namespace (or the context's default)."""

    def __init__(self, binary: str, namespace: str | None) -> None:
        self.binary = binary
        self.namespace = namespace

    def command(self, *args: str) -> list[str]:
        """The full argument list of `kubectl ARGS` in this namespace."""
        extra = ["-n", self.namespace] if self.namespace else []
        return [*args, *extra]

    def shown(self, *args: str) -> str:
        """`kubectl ARGS -n NS` as an operator would type it."""
        return " ".join(["kubectl", *self.command(*args)])

    async def run(self, *args: str, echo_output: bool = True) -> Outcome:
        """Run kubectl, printing the command, its output (unless told not to) and outcome."""
        print(f"$ {self.shown(*args)}", flush=True)
        outcome = await self._execute(self.command(*args))
        if echo_output or not outcome.ok:
            for line in outcome.output.splitlines():
                print(f"    {line}", flush=True)
        verdict = "ok" if outcome.ok else f"FAILED (exit {outcome.code})"
        print(f"  -> {verdict}", flush=True)
        return outcome

    async def deployments(self, *names: str) -> list[dict[str, Any]] | None:
        """`kubectl get deployment NAMES -o json` as objects; None when it failed."""
        outcome = await self.run("get", "deployment", *names, "-o", "json", echo_output=False)
        if not outcome.ok:
            return None
        try:
            document = json.loads(outcome.output)
        except json.JSONDecodeError:
            print("  -> kubectl answered something other than JSON", flush=True)
            return None
        items = document.get("items") if document.get("kind") == "List" else [document]
        return [item for item in items or () if isinstance(item, dict)]

    async def deployment(self, name: str) -> dict[str, Any] | None:
        """One Deployment object, or None when it cannot be read."""
        found = await self.deployments(name)
        return found[0] if found else None

    async def history(self, name: str) -> list[int] | None:
        """The revision numbers `kubectl rollout history` lists, or None when it failed."""
        outcome = await self.run("rollout", "history", f"deployment/{name}")
        if not outcome.ok:
            return None
        return sorted(
            int(first)
            for first in (line.split(maxsplit=1)[0] for line in outcome.output.splitlines() if line)
            if first.isdigit()
        )

    async def _execute(self, args: list[str]) -> Outcome:
        try:
            process = await asyncio.create_subprocess_exec(
                self.binary,
                *args,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
        except OSError as exc:
            return Outcome(MISSING_BINARY, f"{self.binary}: {exc.strerror}")
        out, _ = await process.communicate()
        return Outcome(process.returncode or 0, out.decode("utf-8", "replace").strip())


def annotations_of(deployment: dict[str, Any]) -> dict[str, str]:
    """The Deployment's metadata annotations (empty when it has none)."""
    metadata = deployment.get("metadata") or {}
    found = metadata.get("annotations") or {}
    return {str(key): str(value) for key, value in found.items()}


def revision(deployment: dict[str, Any]) -> int | None:
    """The revision the Deployment runs, from the controller's annotation."""
    return as_revision(annotations_of(deployment).get(REVISION_ANNOTATION))


def as_revision(text: str | None) -> int | None:
    """A revision number from annotation text; None when absent or not a positive integer."""
    if text is None or not text.strip().isdigit() or int(text) <= 0:
        return None
    return int(text)


def env_values(deployment: dict[str, Any], name: str) -> list[str | None]:
    """The value of env var `name` in each container of the pod template (None: not set)."""
    spec = ((deployment.get("spec") or {}).get("template") or {}).get("spec") or {}
    values: list[str | None] = []
    for container in spec.get("containers") or ():
        entries = [e for e in container.get("env") or () if e.get("name") == name]
        values.append(str(entries[-1].get("value")) if entries else None)
    return values
