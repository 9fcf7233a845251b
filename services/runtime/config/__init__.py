"""The one config module of ptf-admin (docs/SPEC.md §2).

Every threshold of the product lives here and nowhere else; services receive a
frozen `AppConfig` through their constructors and never read the environment
themselves.
"""

from services.runtime.config.loading import (
    ConfigError,
    load_config,
    load_thresholds,
    load_thresholds_file,
    reload_thresholds,
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
    "VALID_ENVIRONMENTS",
    "AccessThresholds",
    "AlertThresholds",
    "AppConfig",
    "ConfigError",
    "ConfigValidationError",
    "ConfigViolation",
    "DriftThresholds",
    "GateThresholds",
    "HealthThresholds",
    "MismatchThresholds",
    "PilotThresholds",
    "RecoveryThresholds",
    "ServiceAddresses",
    "Thresholds",
    "ValidationThresholds",
    "build_id_from_env",
    "config_hash",
    "load_config",
    "load_thresholds",
    "load_thresholds_file",
    "reload_thresholds",
    "validate_config",
]
