"""The one config module of ptf-admin (docs/SPEC.md §2).

Every threshold of the product lives here and nowhere else, and so do the
operational settings (the pipeline's queue, relay, intake and extractor
timings); services receive a frozen `AppConfig` through their constructors and
never read the environment themselves.
"""

from services.runtime.config.loading import (
    ConfigError,
    load_config,
    load_thresholds,
    load_thresholds_file,
    parse_boolean,
    reload_thresholds,
)
from services.runtime.config.operations import (
    MEBIBYTE,
    ExtractorSettings,
    HousekeepingSettings,
    HttpServerSettings,
    IntakeSettings,
    LiveSettings,
    PipelineSettings,
    QueueSettings,
    RelaySettings,
)
from services.runtime.config.settings import (
    VALID_ENVIRONMENTS,
    AppConfig,
    ServiceAddresses,
    build_id_from_env,
    config_hash,
)
from services.runtime.config.thresholds import (
    AccessThresholds,
    AlertThresholds,
    DriftThresholds,
    GateThresholds,
    HealthThresholds,
    MismatchThresholds,
    PilotThresholds,
    RecoveryThresholds,
    Thresholds,
    ValidationThresholds,
)
from services.runtime.config.validation import (
    ConfigValidationError,
    ConfigViolation,
    validate_config,
)

__all__ = [
    "MEBIBYTE",
    "VALID_ENVIRONMENTS",
    "AccessThresholds",
    "AlertThresholds",
    "AppConfig",
    "ConfigError",
    "ConfigValidationError",
    "ConfigViolation",
    "DriftThresholds",
    "ExtractorSettings",
    "GateThresholds",
    "HealthThresholds",
    "HousekeepingSettings",
    "HttpServerSettings",
    "IntakeSettings",
    "LiveSettings",
    "MismatchThresholds",
    "PilotThresholds",
    "PipelineSettings",
    "QueueSettings",
    "RecoveryThresholds",
    "RelaySettings",
    "ServiceAddresses",
    "Thresholds",
    "ValidationThresholds",
    "build_id_from_env",
    "config_hash",
    "load_config",
    "load_thresholds",
    "load_thresholds_file",
    "parse_boolean",
    "reload_thresholds",
    "validate_config",
]
