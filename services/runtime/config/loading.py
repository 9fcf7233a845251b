"""Build the effective configuration from defaults, a thresholds file and the environment.

Unknown keys are errors, not silently ignored: a typo in a ConfigMap must stop
the rollout instead of quietly running on defaults.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import fields, replace
from pathlib import Path
from typing import Any, TypeVar

import yaml

from services.runtime.config.operations import (
    HousekeepingSettings,
    HttpServerSettings,
    LiveSettings,
    PipelineSettings,
)
from services.runtime.config.settings import (
    VALID_ENVIRONMENTS,
    AppConfig,
    ServiceAddresses,
    build_id_from_env,
    config_hash,
    default_ports,
)
from services.runtime.config.thresholds import Thresholds
from services.runtime.config.validation import is_finite_number

ENV_THRESHOLD_PREFIX = "PTF_THRESHOLD__"

_T = TypeVar("_T", int, float, bool)


class ConfigError(Exception):
    """The configuration cannot be read: unknown keys, wrong types, bad ENV, unreadable file."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


def _coerce(path: str, value: Any, target: type) -> tuple[Any, str | None]:
    """Convert a file/env value to the field's type, or explain why it cannot be."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None, f"{path}: {value!r} is not a number"
    if not is_finite_number(value):
        return None, f"{path}: {value!r} is not a finite number"
    if target is int:
        if isinstance(value, float) and not value.is_integer():
            return None, f"{path}: {value!r} must be a whole number"
        return int(value), None
    return float(value), None


def _apply_overrides(
    thresholds: Thresholds, overrides: Mapping[str, Any], source: str
) -> tuple[Thresholds, list[str]]:
    """Return thresholds with `{Group: {FIELD: value}}` applied, plus every problem found."""
    problems: list[str] = []
    groups = {f.name: f for f in fields(thresholds)}
    new_groups: dict[str, Any] = {}
    for group_name, group_values in overrides.items():
        if group_name not in groups:
            problems.append(f"{source}: unknown threshold group {group_name!r}")
            continue
        if not isinstance(group_values, Mapping):
            problems.append(f"{source}: {group_name} must be a mapping of FIELD: value")
            continue
        group = new_groups.get(group_name, getattr(thresholds, group_name))
        known = {f.name: f for f in fields(group)}
        changes: dict[str, Any] = {}
        for key, raw in group_values.items():
            if key not in known:
                problems.append(f"{source}: unknown threshold {group_name}.{key}")
                continue
            target = int if isinstance(getattr(group, key), int) else float
            value, problem = _coerce(f"{source}: {group_name}.{key}", raw, target)
            if problem:
                problems.append(problem)
            else:
                changes[key] = value
        new_groups[group_name] = replace(group, **changes)
    return replace(thresholds, **new_groups), problems


def apply_threshold_overrides(
    thresholds: Thresholds, overrides: Mapping[str, Any], source: str
) -> tuple[Thresholds, list[str]]:
    """`thresholds` with `{Group: {FIELD: value}}` applied, plus every problem found (a
    backtest's candidate thresholds are read exactly like a thresholds file)."""
    return _apply_overrides(thresholds, overrides, source)


def load_thresholds_file(path: Path) -> dict[str, Any]:
    """Read a YAML or JSON thresholds file (JSON is valid YAML) into a mapping."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read thresholds file ({exc.strerror})"]) from exc
    except yaml.YAMLError as exc:
        raise ConfigError([f"{path}: not valid YAML/JSON ({exc})"]) from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError([f"{path}: top level must be a mapping of threshold groups"])
    return data


def _env_overrides(environ: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """`PTF_THRESHOLD__MISMATCH__RATIO=0.04` → `{"Mismatch": {"RATIO": "0.04"}}`."""
    group_names = {f.name.upper(): f.name for f in fields(Thresholds)}
    out: dict[str, dict[str, str]] = {}
    for key, value in environ.items():
        if not key.startswith(ENV_THRESHOLD_PREFIX):
            continue
        parts = key[len(ENV_THRESHOLD_PREFIX) :].split("__")
        group = group_names.get(parts[0], parts[0]) if parts else ""
        name = parts[1] if len(parts) == 2 else "__".join(parts[1:]) or "?"
        out.setdefault(group, {})[name] = value
    return out


def threshold_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The part of the environment that shapes thresholds (file name and overrides)."""
    return {
        key: value
        for key, value in environ.items()
        if key == "PTF_THRESHOLDS_FILE" or key.startswith(ENV_THRESHOLD_PREFIX)
    }


def reload_thresholds(config: AppConfig) -> Thresholds:
    """Re-read the deployed thresholds source as this process was configured to read it.

    A mounted ConfigMap changes on disk without a restart; readiness re-reads it
    so a broken file shows up before the next rollout restarts pods on it.
    """
    return load_thresholds(dict(config.threshold_environment))


def load_thresholds(environ: Mapping[str, str]) -> Thresholds:
    """Defaults, then `PTF_THRESHOLDS_FILE`, then `PTF_THRESHOLD__GROUP__FIELD` env vars."""
    thresholds = Thresholds()
    problems: list[str] = []
    file_name = environ.get("PTF_THRESHOLDS_FILE", "")
    if file_name:
        thresholds, file_problems = _apply_overrides(
            thresholds, load_thresholds_file(Path(file_name)), file_name
        )
        problems.extend(file_problems)
    thresholds, env_problems = _apply_overrides(thresholds, _env_overrides(environ), "environment")
    problems.extend(env_problems)
    if problems:
        raise ConfigError(problems)
    return thresholds


_TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
_FALSE_WORDS = frozenset({"0", "false", "no", "off"})


def parse_boolean(raw: str) -> bool:
    """`true`/`false` as every setting and flag of ptf-admin spells them.

    One vocabulary for all of them (1/true/yes/on, 0/false/no/off, any case,
    surrounding blanks ignored), so a value that switches something on in one
    service cannot be refused or read as off by another. Raises `ValueError`
    for anything else, so each caller decides what an unreadable value means.
    """
    word = raw.strip().lower()
    if word in _TRUE_WORDS:
        return True
    if word in _FALSE_WORDS:
        return False
    raise ValueError(f"{raw!r} is not a boolean (true/false)")


def _flag(environ: Mapping[str, str], name: str, default: bool, problems: list[str]) -> bool:
    raw = environ.get(name, "")
    if not raw.strip():
        return default
    try:
        return parse_boolean(raw)
    except ValueError as exc:
        problems.append(f"{name}: {exc}")
        return default


def _setting(
    environ: Mapping[str, str],
    name: str,
    default: _T,
    parse: Callable[[str], _T],
    problems: list[str],
) -> _T:
    """`environ[name]` read by `parse`, or `default` when unset (a bad value is a problem)."""
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return parse(raw)
    except ValueError:
        problems.append(f"{name}: {raw!r} is not a valid {type(default).__name__}")
        return default


def _pipeline_settings(environ: Mapping[str, str], problems: list[str]) -> PipelineSettings:
    """The pipeline's operational settings: defaults, then `PTF_QUEUE_*` / `PTF_PIPELINE_*`."""
    base = PipelineSettings()
    q, intake, extractor, relay = base.queue, base.intake, base.extractor, base.relay

    def read(name: str, default: _T, parse: Callable[[str], _T]) -> _T:
        return _setting(environ, name, default, parse, problems)

    settings = replace(
        base,
        queue=replace(
            q,
            max_attempts=read("PTF_QUEUE_MAX_ATTEMPTS", q.max_attempts, int),
            visibility_timeout_seconds=read(
                "PTF_QUEUE_VISIBILITY_TIMEOUT_SECONDS", q.visibility_timeout_seconds, float
            ),
            backoff_base_seconds=read(
                "PTF_QUEUE_BACKOFF_BASE_SECONDS", q.backoff_base_seconds, float
            ),
            backoff_max_seconds=read("PTF_QUEUE_BACKOFF_MAX_SECONDS", q.backoff_max_seconds, float),
            worker_batch_size=read("PTF_QUEUE_WORKER_BATCH_SIZE", q.worker_batch_size, int),
        ),
        relay=replace(
            relay,
            interval_seconds=read("PTF_RELAY_INTERVAL_SECONDS", relay.interval_seconds, float),
            batch_size=read("PTF_RELAY_BATCH_SIZE", relay.batch_size, int),
        ),
        intake=replace(
            intake,
            sync_timeout_seconds=read(
                "PTF_PIPELINE_SYNC_TIMEOUT_SECONDS", intake.sync_timeout_seconds, float
            ),
            max_batch_size=read("PTF_INTAKE_MAX_BATCH_SIZE", intake.max_batch_size, int),
        ),
        extractor=replace(
            extractor,
            request_timeout_seconds=read(
                "PTF_PIPELINE_EXTRACTOR_TIMEOUT_SECONDS", extractor.request_timeout_seconds, float
            ),
        ),
        backtest=replace(
            base.backtest,
            token_ttl_seconds=read(
                "PTF_BACKTEST_TOKEN_TTL_SECONDS", base.backtest.token_ttl_seconds, float
            ),
            max_page_limit=read("PTF_BACKTEST_MAX_PAGE_LIMIT", base.backtest.max_page_limit, int),
            cursor_secret=environ.get("PTF_BACKTEST_CURSOR_SECRET", ""),
        ),
        inprocess_workers=read("PTF_PIPELINE_INPROCESS_WORKERS", base.inprocess_workers, int),
        run_relay=read("PTF_PIPELINE_RELAY", base.run_relay, parse_boolean),
    )
    problems.extend(settings.problems())
    return settings


_SecondsSettings = TypeVar("_SecondsSettings", HousekeepingSettings, HttpServerSettings)


def _seconds_settings(
    environ: Mapping[str, str],
    settings_type: type[_SecondsSettings],
    variables: Mapping[str, str],
    problems: list[str],
) -> _SecondsSettings:
    """Defaults of `settings_type`, then each field's environment variable (`variables`).

    For the settings groups whose fields are all seconds (floats) with a `problems()` check.
    """
    base = settings_type()
    settings = replace(
        base,
        **{
            name: _setting(environ, variable, getattr(base, name), float, problems)
            for name, variable in variables.items()
        },
    )
    problems.extend(settings.problems())
    return settings


def _live_settings(environ: Mapping[str, str], problems: list[str]) -> LiveSettings:
    """The live layer's settings: defaults, then `PTF_LIVE_*`."""
    base = LiveSettings()

    def read(name: str, default: _T, parse: Callable[[str], _T]) -> _T:
        return _setting(environ, name, default, parse, problems)

    settings = LiveSettings(
        subscriber_buffer=read("PTF_LIVE_SUBSCRIBER_BUFFER", base.subscriber_buffer, int),
        retained_per_channel=read("PTF_LIVE_RETAINED_PER_CHANNEL", base.retained_per_channel, int),
        heartbeat_seconds=read("PTF_LIVE_HEARTBEAT_SECONDS", base.heartbeat_seconds, float),
        subscribe_timeout_seconds=read(
            "PTF_LIVE_SUBSCRIBE_TIMEOUT_SECONDS", base.subscribe_timeout_seconds, float
        ),
        stale_after_seconds=read("PTF_LIVE_STALE_AFTER_SECONDS", base.stale_after_seconds, float),
        dead_after_seconds=read("PTF_LIVE_DEAD_AFTER_SECONDS", base.dead_after_seconds, float),
    )
    problems.extend(settings.problems())
    return settings


def _port(environ: Mapping[str, str], name: str, default: int, problems: list[str]) -> int:
    raw = environ.get(name, "")
    if not raw:
        return default
    if not raw.isdigit() or not 0 <= int(raw) <= 65535:
        problems.append(f"{name}: {raw!r} is not a TCP port")
        return default
    return int(raw)


def load_config(service: str, environ: Mapping[str, str] | None = None) -> AppConfig:
    """Read the effective configuration of one service; raise `ConfigError` on any problem.

    Threshold invariants are checked separately by `validate_config()`, so that
    a service can report every violation with its own exit code.
    """
    env_map: Mapping[str, str] = os.environ if environ is None else environ
    problems: list[str] = []
    env = env_map.get("ENV", "development")
    if env not in VALID_ENVIRONMENTS:
        problems.append(f"ENV: {env!r} is not one of {sorted(VALID_ENVIRONMENTS)}")
    try:
        thresholds = load_thresholds(env_map)
    except ConfigError as exc:
        problems.extend(exc.problems)
        thresholds = Thresholds()
    grpc_default, http_default = default_ports(service)
    config = AppConfig(
        service=service,
        env=env,
        build_id=build_id_from_env(env_map),
        thresholds=thresholds,
        thresholds_file=env_map.get("PTF_THRESHOLDS_FILE", ""),
        threshold_environment=tuple(sorted(threshold_environment(env_map).items())),
        bind_host=env_map.get("PTF_BIND_HOST", "127.0.0.1"),
        grpc_port=_port(env_map, "PTF_GRPC_PORT", grpc_default, problems),
        http_port=_port(env_map, "PTF_HTTP_PORT", http_default, problems),
        database_url=env_map.get("DATABASE_URL", ""),
        redis_url=env_map.get("REDIS_URL", ""),
        redis_prefix=env_map.get("PTF_REDIS_PREFIX", "ptf"),
        pilot_enabled=_flag(env_map, "PILOT_ENABLED", True, problems),
        pilot_tenant_id=env_map.get("PILOT_TENANT_ID", "pilot"),
        extractor=env_map.get("EXTRACTOR", "json"),
        openai_base_url=env_map.get("OPENAI_BASE_URL", "https://api.openai.com/v1"),
        openai_model=env_map.get("OPENAI_MODEL", "gpt-4o-2024-08-06"),
        openai_api_key=env_map.get("OPENAI_API_KEY", ""),
        gate_audit_required=_flag(env_map, "GATE_AUDIT_REQUIRED", False, problems),
        token_store=env_map.get("PTF_TOKEN_STORE", "redis"),
        metrics_dir=env_map.get("PTF_METRICS_DIR", ".data/metrics"),
        dev_tenant_key=env_map.get("PTF_DEV_TENANT_KEY", "dev-tenant-key"),
        dev_admin_key=env_map.get("PTF_DEV_ADMIN_KEY", "dev-admin-key"),
        dev_service_key=env_map.get("PTF_DEV_SERVICE_KEY", "dev-service-key"),
        service_key=env_map.get("PTF_SERVICE_KEY", ""),
        addresses=ServiceAddresses(
            gate=env_map.get("PTF_GATE_ADDR", "127.0.0.1:50051"),
            telemetry=env_map.get("PTF_TELEMETRY_ADDR", "127.0.0.1:50052"),
            pipeline=env_map.get("PTF_PIPELINE_ADDR", "127.0.0.1:50053"),
            health=env_map.get("PTF_HEALTH_ADDR", "127.0.0.1:50054"),
        ),
        pipeline=_pipeline_settings(env_map, problems),
        live=_live_settings(env_map, problems),
        housekeeping=_seconds_settings(
            env_map,
            HousekeepingSettings,
            {
                "interval_seconds": "PTF_HOUSEKEEPING_INTERVAL_SECONDS",
                "outbox_retention_seconds": "PTF_OUTBOX_RETENTION_SECONDS",
            },
            problems,
        ),
        http=_seconds_settings(
            env_map,
            HttpServerSettings,
            {
                "idle_timeout_seconds": "PTF_HTTP_IDLE_TIMEOUT_SECONDS",
                "body_timeout_seconds": "PTF_HTTP_BODY_TIMEOUT_SECONDS",
            },
            problems,
        ),
    )
    if config.token_store not in {"redis", "postgres"}:
        problems.append(
            f"PTF_TOKEN_STORE: {config.token_store!r} is not one of ['postgres', 'redis']"
        )
    if config.extractor not in {"json", "openai"}:
        problems.append(f"EXTRACTOR: {config.extractor!r} is not one of ['json', 'openai']")
    if problems:
        raise ConfigError(problems)
    return replace(config, config_hash=config_hash(config))
