"""What every ptf-admin service shares: config, serving, metrics, logging, storage, errors."""
