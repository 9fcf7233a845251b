-- Reference data for offers (SPEC §3.3): monthly market prices and distribution
-- tariffs, loaded from CSV by `ptf-pipeline load-market-prices|load-tariffs`.
-- Shared by every tenant (published market data, not tenant data), so these
-- are the only pipeline tables without tenant_id.
CREATE TABLE pipeline_market_prices (
    period            text        PRIMARY KEY CHECK (period ~ '^[0-9]{4}-(0[1-9]|1[0-2])$'),
    ptf_tl_per_mwh    numeric     NOT NULL CHECK (ptf_tl_per_mwh >= 0),
    yekdem_tl_per_mwh numeric     NOT NULL CHECK (yekdem_tl_per_mwh >= 0),
    source            text        NOT NULL DEFAULT '',
    loaded_at         timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE pipeline_tariffs (
    tariff_group            text        PRIMARY KEY,
    distribution_tl_per_mwh numeric     NOT NULL CHECK (distribution_tl_per_mwh >= 0),
    source                  text        NOT NULL DEFAULT '',
    loaded_at               timestamptz NOT NULL DEFAULT now()
);
