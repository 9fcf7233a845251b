"""The pipeline's operational settings, which live in the shared config module now.

`services.runtime.config.operations` defines them and `load_config` reads them
with the rest of `AppConfig` (`config.pipeline`); this module only keeps the
pipeline's own imports short.
"""

from services.runtime.config.operations import (
    MEBIBYTE,
    ExtractorSettings,
    IntakeSettings,
    PipelineSettings,
    QueueSettings,
    RelaySettings,
)

__all__ = [
    "MEBIBYTE",
    "ExtractorSettings",
    "IntakeSettings",
    "PipelineSettings",
    "QueueSettings",
    "RelaySettings",
]
