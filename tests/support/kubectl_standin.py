#!/usr/bin/env python3
"""A stand-in `kubectl` that keeps Deployment revision history the way Kubernetes does.

Why it exists: whether a rollback really rolls back depends on how Kubernetes numbers
revisions, which a stand-in that only logs its arguments cannot show. This one keeps, in
a JSON file named by $KUBECTL_STANDIN_STATE, each Deployment's pod template and its
ReplicaSets, and applies the rules of the Kubernetes deployment controller:

- every ReplicaSet holds one distinct pod template and a revision number;
- a change of the pod template (`set env` to a new value, `set image`, `rollout undo`)
  selects the ReplicaSet whose template equals the new one, or creates one, and gives it
  the next revision (max + 1). So `rollout undo --to-revision=N` makes N's template the
  newest revision and N itself leaves the history, as upstream reuses that ReplicaSet;
- a command that leaves the template as it was creates no revision (and `set env`
  prints nothing, like kubectl);
- `annotate` changes metadata only; like the controller, it copies the Deployment's
  annotations (all but its own bookkeeping ones) onto the current ReplicaSet, and a new
  ReplicaSet starts with them;
- `rollout undo` restores, besides the template, the restored ReplicaSet's annotations:
  kubectl replaces the Deployment's annotations with them, keeping only the bookkeeping
  ones, so an annotation set after that ReplicaSet was current does not survive an undo;
- ReplicaSets beyond `revisionHistoryLimit` (oldest first, never the current) are pruned.

Rollouts complete at once unless a Deployment is marked `stalled`, so that
`rollout status` can be made to time out. Run it as `python kubectl_standin.py ARGS`
(or through `install`, which writes an executable wrapper); tests also drive it
in-process through `Standin.run`.
"""

from __future__ import annotations

import copy
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STATE_ENV = "KUBECTL_STANDIN_STATE"
REVISION = "deployment.kubernetes.io/revision"
HISTORY_LIMIT = 10
BOOKKEEPING = frozenset(
    {
        REVISION,
        "deployment.kubernetes.io/revision-history",
        "deployment.kubernetes.io/desired-replicas",
        "deployment.kubernetes.io/max-replicas",
        "kubectl.kubernetes.io/last-applied-configuration",
        "deprecated.deployment.rollback.to",
    }
)
DEPLOYMENT_TYPES = frozenset(
    {"deployment", "deployments", "deploy", "deployment.apps", "deployments.apps"}
)
Deployment = dict[str, Any]
State = dict[str, Any]


class KubectlError(Exception):
    """A failure kubectl would report: message on stderr, exit 1."""


@dataclass
class Flags:
    """One invocation's flags (name → value, `true` for a bare boolean) and other arguments."""

    values: dict[str, str]
    positional: list[str]


_SHORT = {"-n": "namespace", "-o": "output"}
_TAKES_VALUE = frozenset({"namespace", "output", "to-revision", "timeout", "image"})


def _parse(argv: Sequence[str], command: str, allowed: frozenset[str]) -> Flags:
    values: dict[str, str] = {}
    positional: list[str] = []
    args = list(argv)
    while args:
        arg = args.pop(0)
        name, value = _flag(arg)
        if name is None:
            positional.append(arg)
            continue
        if name not in allowed | {"namespace"}:
            shown = arg.split("=", 1)[0]
            if shown.startswith("--"):
                raise KubectlError(
                    f"error: unknown flag: {shown}\nSee 'kubectl {command} --help' for usage."
                )
            raise KubectlError(
                f"error: unknown shorthand flag: {shown[1:2]!r} in {shown}\n"
                f"See 'kubectl {command} --help' for usage."
            )
        if value is None:
            if name in _TAKES_VALUE:
                if not args:
                    raise KubectlError(f"error: flag needs an argument: {arg}")
                value = args.pop(0)
            else:
                value = "true"
        values[name] = value
    return Flags(values, positional)


def _flag(arg: str) -> tuple[str | None, str | None]:
    """(flag name, inline value) of `arg`, or (None, None) for a positional argument."""
    if arg.startswith("--"):
        name, sep, value = arg[2:].partition("=")
        return name, value if sep else None
    if arg.startswith("-") and len(arg) > 1:
        name = _SHORT.get(arg[:2], arg[1:2])
        rest = arg[2:]
        if rest.startswith("="):
            rest = rest[1:]
        return name, rest or None
    return None, None


# --- state ---------------------------------------------------------------------------------


def _load(path: Path) -> State:
    if not path.exists():
        return {"deployments": {}, "calls": []}
    state: State = json.loads(path.read_text(encoding="utf-8"))
    return state


def _save(path: Path, state: State) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(state, indent=2, sort_keys=True), encoding="utf-8")
    temporary.replace(path)


def _key(namespace: str, name: str) -> str:
    return f"{namespace}/{name}"


def _find(state: State, namespace: str, name: str) -> Deployment:
    deployment: Deployment | None = state["deployments"].get(_key(namespace, name))
    if deployment is None:
        raise KubectlError(f'Error from server (NotFound): deployments.apps "{name}" not found')
    return deployment


def _current_revision(deployment: Deployment) -> int:
    return max(int(rs["revision"]) for rs in deployment["replicasets"])


def _carried(annotations: dict[str, str]) -> dict[str, str]:
    """The annotations that travel between a Deployment and its ReplicaSets."""
    return {key: value for key, value in annotations.items() if key not in BOOKKEEPING}


def _sync_current_replicaset(deployment: Deployment) -> None:
    """The controller's copy of the Deployment's annotations onto the current ReplicaSet."""
    current = _current_revision(deployment)
    for rs in deployment["replicasets"]:
        if rs["revision"] == current:
            rs["annotations"] = _carried(deployment["annotations"])


def _apply_template(deployment: Deployment, template: dict[str, Any]) -> bool:
    """Give the Deployment `template`, as the controller does; False when nothing changed."""
    if template == deployment["template"]:
        return False
    deployment["template"] = copy.deepcopy(template)
    deployment["generation"] += 1
    next_revision = _current_revision(deployment) + 1
    same = [rs for rs in deployment["replicasets"] if rs["template"] == template]
    if same:
        same[0]["revision"] = next_revision
    else:
        deployment["replicasets"].append(
            {"revision": next_revision, "template": copy.deepcopy(template), "annotations": {}}
        )
    deployment["annotations"][REVISION] = str(next_revision)
    _sync_current_replicaset(deployment)
    old = sorted(
        (rs for rs in deployment["replicasets"] if rs["revision"] != next_revision),
        key=lambda rs: rs["revision"],
    )
    excess = len(old) - deployment["revision_history_limit"]
    if excess > 0:
        pruned = {rs["revision"] for rs in old[:excess]}
        deployment["replicasets"] = [
            rs for rs in deployment["replicasets"] if rs["revision"] not in pruned
        ]
    return True


def new_deployment(
    name: str,
    namespace: str,
    containers: Sequence[dict[str, Any]],
    revision_history_limit: int = HISTORY_LIMIT,
) -> Deployment:
    """A Deployment at revision 1 with these containers (name, image, env list)."""
    template = {"containers": [copy.deepcopy(dict(c)) for c in containers]}
    return {
        "name": name,
        "namespace": namespace,
        "annotations": {REVISION: "1"},
        "generation": 1,
        "template": template,
        "replicasets": [{"revision": 1, "template": copy.deepcopy(template), "annotations": {}}],
        "revision_history_limit": revision_history_limit,
        "stalled": False,
    }


def as_object(deployment: Deployment) -> dict[str, Any]:
    """The Deployment as `kubectl get -o json` shows it (the fields this stand-in keeps)."""
    done = not deployment["stalled"]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": deployment["name"],
            "namespace": deployment["namespace"],
            "generation": deployment["generation"],
            "annotations": dict(deployment["annotations"]),
        },
        "spec": {
            "revisionHistoryLimit": deployment["revision_history_limit"],
            "template": {"spec": copy.deepcopy(deployment["template"])},
        },
        "status": {
            "observedGeneration": deployment["generation"],
            "updatedReplicas": 1 if done else 0,
            "availableReplicas": 1 if done else 0,
        },
    }


# --- resources -----------------------------------------------------------------------------


def _names(positional: Sequence[str]) -> tuple[list[str], list[str]]:
    """(deployment names, remaining arguments) from `deployment/a b/...` or `deployment a b`."""
    if not positional:
        raise KubectlError(
            "error: one or more resources must be specified as <resource> <name> "
            "or <resource>/<name>"
        )
    names: list[str] = []
    rest = list(positional)
    if "/" not in rest[0]:
        kind = rest.pop(0)
        _check_type(kind)
        while rest and "=" not in rest[0] and not rest[0].endswith("-"):
            names.append(rest.pop(0))
        if not names:
            raise KubectlError(f"error: you must specify the name of the {kind}")
        return names, rest
    while rest and "/" in rest[0] and "=" not in rest[0]:
        kind, _, name = rest.pop(0).partition("/")
        _check_type(kind)
        names.append(name)
    return names, rest


def _check_type(kind: str) -> None:
    if kind.lower() not in DEPLOYMENT_TYPES:
        raise KubectlError(
            f'error: the server doesn\'t have a resource type "{kind}" (this stand-in keeps '
            "Deployments only)"
        )


def _one(positional: Sequence[str], command: str) -> tuple[str, list[str]]:
    names, rest = _names(positional)
    if len(names) != 1:
        raise KubectlError(f"error: {command} takes exactly one deployment")
    return names[0], rest


# --- commands ------------------------------------------------------------------------------


def _get(state: State, argv: Sequence[str]) -> str:
    flags = _parse(argv, "get", frozenset({"output"}))
    namespace = flags.values.get("namespace", "default")
    names, rest = _names(flags.positional)
    if rest:
        raise KubectlError(f'Error from server (NotFound): deployments.apps "{rest[0]}" not found')
    objects = [as_object(_find(state, namespace, name)) for name in names]
    output = flags.values.get("output", "")
    if output == "json":
        if len(objects) == 1:
            return json.dumps(objects[0], indent=4)
        return json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}, indent=4)
    if output.startswith("jsonpath="):
        return " ".join(_jsonpath(obj, output[len("jsonpath=") :]) for obj in objects)
    if output:
        raise KubectlError(
            f"error: unable to match a printer suitable for the output format "
            f'"{output}" (this stand-in knows json and jsonpath)'
        )
    lines = ["NAME   READY   UP-TO-DATE   AVAILABLE"]
    for obj in objects:
        ready = obj["status"]["availableReplicas"]
        lines.append(f"{obj['metadata']['name']}   {ready}/1   {ready}   {ready}")
    return "\n".join(lines)


def _jsonpath(obj: Any, expression: str) -> str:
    """A `{.a.b\\.c[0]}` JSONPath (field names, escaped dots, indices); missing is empty."""
    expression = expression.strip()
    if not (expression.startswith("{") and expression.endswith("}")):
        raise KubectlError(f"error: error parsing jsonpath {expression}, unsupported expression")
    path = expression[1:-1]
    if path.startswith("."):
        path = path[1:]
    value: Any = obj
    for part in _fields(path):
        field, _, index = part.partition("[")
        if field:
            if not isinstance(value, dict) or field not in value:
                return ""
            value = value[field]
        if index:
            position = int(index.rstrip("]"))
            if not isinstance(value, list) or position >= len(value):
                raise KubectlError("error: error executing jsonpath: array index out of bounds")
            value = value[position]
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _fields(path: str) -> list[str]:
    parts: list[str] = []
    current = ""
    escaped = False
    for char in path:
        if escaped:
            current += char
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ".":
            parts.append(current)
            current = ""
        else:
            current += char
    if current:
        parts.append(current)
    return parts


def _set(state: State, argv: Sequence[str]) -> str:
    if not argv or argv[0] not in ("env", "image"):
        raise KubectlError(f'error: unknown command "{argv[0] if argv else ""}" for "kubectl set"')
    command = f"set {argv[0]}"
    flags = _parse(argv[1:], command, frozenset())
    namespace = flags.values.get("namespace", "default")
    names, pairs = _names(flags.positional)
    if not pairs:
        raise KubectlError(
            "error: at least one environment variable must be provided"
            if argv[0] == "env"
            else "error: at least one image update is required"
        )
    deployments = [_find(state, namespace, name) for name in names]
    change = _env_change(pairs) if argv[0] == "env" else _image_change(pairs)
    lines = []
    for deployment in deployments:
        template = copy.deepcopy(deployment["template"])
        for container in template["containers"]:
            change(container)
        if _apply_template(deployment, template):
            what = "env updated" if argv[0] == "env" else "image updated"
            lines.append(f"deployment.apps/{deployment['name']} {what}")
    return "\n".join(lines)


def _env_change(pairs: Sequence[str]) -> Callable[[dict[str, Any]], None]:
    updates: list[tuple[str, str | None]] = []
    for pair in pairs:
        if pair.endswith("-") and "=" not in pair:
            updates.append((pair[:-1], None))
            continue
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise KubectlError(
                f"error: environment variables must be of the form key=value: {pair}"
            )
        updates.append((name, value))

    def change(container: dict[str, Any]) -> None:
        env: list[dict[str, str]] = copy.deepcopy(container.get("env", []))
        for name, value in updates:
            existing = [e for e in env if e["name"] == name]
            if value is None:
                env = [e for e in env if e["name"] != name]
            elif existing:
                existing[0]["value"] = value
            else:
                env.append({"name": name, "value": value})
        if env or "env" in container:
            container["env"] = env

    return change


def _image_change(pairs: Sequence[str]) -> Callable[[dict[str, Any]], None]:
    images: dict[str, str] = {}
    for pair in pairs:
        name, sep, image = pair.partition("=")
        if not sep or not name or not image:
            raise KubectlError(f"error: expected CONTAINER=IMAGE, got {pair}")
        images[name] = image

    def change(container: dict[str, Any]) -> None:
        if container["name"] in images:
            container["image"] = images[container["name"]]
        elif "*" in images:
            container["image"] = images["*"]

    return change


def _annotate(state: State, argv: Sequence[str]) -> str:
    flags = _parse(argv, "annotate", frozenset({"overwrite"}))
    namespace = flags.values.get("namespace", "default")
    names, pairs = _names(flags.positional)
    if not pairs:
        raise KubectlError("error: at least one annotation update is required")
    overwrite = flags.values.get("overwrite", "false") == "true"
    lines = []
    for name in names:
        deployment = _find(state, namespace, name)
        annotations: dict[str, str] = deployment["annotations"]
        for pair in pairs:
            if pair.endswith("-") and "=" not in pair:
                annotations.pop(pair[:-1], None)
                continue
            key, sep, value = pair.partition("=")
            if not sep or not key:
                raise KubectlError(f"error: invalid annotation spec: {pair}")
            if key in annotations and annotations[key] != value and not overwrite:
                raise KubectlError(
                    "error: --overwrite is false but found the following declared "
                    f"annotation(s): '{key}' already has a value ({annotations[key]})"
                )
            annotations[key] = value
        _sync_current_replicaset(deployment)
        lines.append(f"deployment.apps/{name} annotated")
    return "\n".join(lines)


def _rollout(state: State, argv: Sequence[str]) -> str:
    verbs: dict[str, tuple[frozenset[str], Callable[[Deployment, Flags], str]]] = {
        "undo": (frozenset({"to-revision"}), _undo),
        "history": (frozenset(), _history),
        "status": (frozenset({"watch", "timeout"}), _status),
    }
    if not argv or argv[0] not in verbs:
        raise KubectlError(
            f'error: unknown command "{argv[0] if argv else ""}" for "kubectl rollout"'
        )
    allowed, run = verbs[argv[0]]
    flags = _parse(argv[1:], f"rollout {argv[0]}", allowed)
    name, rest = _one(flags.positional, f"rollout {argv[0]}")
    if rest:
        raise KubectlError(f"error: unexpected argument {rest[0]!r}")
    return run(_find(state, flags.values.get("namespace", "default"), name), flags)


def _undo(deployment: Deployment, flags: Flags) -> str:
    name = deployment["name"]
    text = flags.values.get("to-revision", "0")
    try:
        to_revision = int(text)
    except ValueError:
        raise KubectlError(
            f'error: invalid argument "{text}" for "--to-revision" flag: '
            f'strconv.ParseInt: parsing "{text}": invalid syntax'
        ) from None
    by_revision = sorted(deployment["replicasets"], key=lambda rs: rs["revision"])
    if to_revision:
        matches = [rs for rs in by_revision if rs["revision"] == to_revision]
        if not matches:
            raise KubectlError(f"error: unable to find specified revision {to_revision} in history")
        target = matches[0]
    else:
        if len(by_revision) < 2:
            raise KubectlError(f'error: no rollout history found for deployment "{name}"')
        target = by_revision[-2]
    if target["template"] == deployment["template"]:
        return (
            f"deployment.apps/{name} skipped rollback "
            f"(current template already matches revision {target['revision']})"
        )
    kept = {k: v for k, v in deployment["annotations"].items() if k in BOOKKEEPING}
    deployment["annotations"] = {**kept, **_carried(target.get("annotations", {}))}
    _apply_template(deployment, target["template"])
    return f"deployment.apps/{name} rolled back"


def _history(deployment: Deployment, _: Flags) -> str:
    lines = [f"deployment.apps/{deployment['name']} ", "REVISION  CHANGE-CAUSE"]
    for rs in sorted(deployment["replicasets"], key=lambda rs: rs["revision"]):
        lines.append(f"{rs['revision']:<10}<none>")
    return "\n".join(lines) + "\n"


def _status(deployment: Deployment, flags: Flags) -> str:
    name = deployment["name"]
    if not deployment["stalled"]:
        return f'deployment "{name}" successfully rolled out'
    waiting = (
        f'Waiting for deployment "{name}" rollout to finish: '
        "0 of 1 updated replicas are available..."
    )
    if flags.values.get("watch", "true") == "false":
        return waiting
    raise KubectlError(f"{waiting}\nerror: timed out waiting for the condition")


def _create(state: State, argv: Sequence[str]) -> str:
    if not argv or argv[0] != "deployment":
        raise KubectlError(
            f'error: unknown command "{argv[0] if argv else ""}" for "kubectl create" '
            "(this stand-in creates deployments only)"
        )
    flags = _parse(argv[1:], "create deployment", frozenset({"image"}))
    namespace = flags.values.get("namespace", "default")
    if len(flags.positional) != 1 or "image" not in flags.values:
        raise KubectlError("error: exactly one NAME and --image are required")
    name = flags.positional[0]
    if _key(namespace, name) in state["deployments"]:
        raise KubectlError(
            f'Error from server (AlreadyExists): deployments.apps "{name}" already exists'
        )
    image = flags.values["image"]
    container = image.rsplit("/", 1)[-1].split(":", 1)[0].split("@", 1)[0]
    state["deployments"][_key(namespace, name)] = new_deployment(
        name, namespace, [{"name": container, "image": image, "env": []}]
    )
    return f"deployment.apps/{name} created"


COMMANDS: dict[str, Callable[[State, Sequence[str]], str]] = {
    "get": _get,
    "set": _set,
    "annotate": _annotate,
    "rollout": _rollout,
    "create": _create,
}


def execute(argv: Sequence[str], state_path: Path) -> tuple[int, str, str]:
    """Run one kubectl command against the state file: (exit code, stdout, stderr)."""
    state = _load(state_path)
    state.setdefault("calls", []).append(list(argv))
    if not argv or argv[0] not in COMMANDS:
        name = argv[0] if argv else ""
        _save(state_path, state)
        return 1, "", f'error: unknown command "{name}" for "kubectl"\n'
    try:
        out = COMMANDS[argv[0]](state, argv[1:])
    except KubectlError as exc:
        fresh = _load(state_path)  # a failed command changes nothing but the call log
        fresh.setdefault("calls", []).append(list(argv))
        _save(state_path, fresh)
        return 1, "", f"{exc}\n"
    _save(state_path, state)
    return 0, f"{out}\n" if out else "", ""


# --- test-side helpers ---------------------------------------------------------------------


@dataclass(frozen=True)
class Standin:
    """A stand-in cluster: its state file and an executable that runs it as `kubectl`."""

    state: Path
    binary: Path

    def add(self, deployment: Deployment) -> None:
        """Store a Deployment (see `new_deployment`) as if it had been applied."""
        state = _load(self.state)
        state["deployments"][_key(deployment["namespace"], deployment["name"])] = deployment
        _save(self.state, state)

    def deployment(self, name: str, namespace: str = "default") -> Deployment:
        """The stored Deployment (template, ReplicaSets, annotations)."""
        return _find(_load(self.state), namespace, name)

    def deployments(self) -> dict[str, Deployment]:
        """Every stored Deployment by `namespace/name`."""
        deployments: dict[str, Deployment] = _load(self.state)["deployments"]
        return deployments

    def calls(self) -> list[list[str]]:
        """Every command run so far, in order."""
        calls: list[list[str]] = _load(self.state).get("calls", [])
        return calls

    def run(self, *argv: str) -> tuple[int, str, str]:
        """Run a kubectl command in-process (test setup and stand-in tests)."""
        return execute(argv, self.state)

    def set_stalled(self, name: str, namespace: str, stalled: bool) -> None:
        """Make the Deployment's rollouts never complete (or complete again)."""
        state = _load(self.state)
        _find(state, namespace, name)["stalled"] = stalled
        _save(self.state, state)


def install(directory: Path) -> Standin:
    """An empty stand-in cluster in `directory` with a `kubectl` executable bound to it."""
    directory.mkdir(parents=True, exist_ok=True)
    state = directory / "kubectl-state.json"
    _save(state, {"deployments": {}, "calls": []})
    binary = directory / "kubectl"
    binary.write_text(
        "#!/bin/sh\n"
        f'{STATE_ENV}="{state}" exec "{sys.executable}" "{Path(__file__).resolve()}" "$@"\n',
        encoding="utf-8",
    )
    binary.chmod(0o755)
    return Standin(state, binary)


def main() -> None:
    """CLI entry point: state file from $KUBECTL_STANDIN_STATE."""
    path = os.environ.get(STATE_ENV)
    if not path:
        sys.stderr.write(f"error: {STATE_ENV} must name the stand-in's state file\n")
        sys.exit(1)
    code, out, err = execute(sys.argv[1:], Path(path))
    sys.stdout.write(out)
    sys.stderr.write(err)
    sys.exit(code)


if __name__ == "__main__":
    main()
