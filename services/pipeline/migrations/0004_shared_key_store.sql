-- API keys moved to the key store every service shares (api_keys, created by the
-- runtime's `keys` migrations, which the pipeline applies before its own). Keys
-- made with `ptf-pipeline keys create` keep working: each is copied with its
-- label as its operator (or "unnamed" when it had none).
INSERT INTO api_keys (key_hash, role, tenants, operator, label, created_at, revoked_at)
SELECT key_hash, role, tenants, coalesce(nullif(left(label, 128), ''), 'unnamed'), label,
       created_at, revoked_at
FROM pipeline_api_keys
ON CONFLICT (key_hash) DO NOTHING;

DROP TABLE pipeline_api_keys;
