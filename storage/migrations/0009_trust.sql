-- fencewatch schema, version 9 (issue 13): heightened periods scoped to offices, and the
-- engine_fault alert of ingest/quarantine.py.

-- The offices a heightened period applies to, with everything below them; empty applies
-- service-wide (only a token of no office may create such a period: api/routes/heightened.py).
ALTER TABLE heightened_periods
    ADD COLUMN IF NOT EXISTS offices text[] NOT NULL DEFAULT '{}';

-- An engine_fault says the service could not judge a person's data, not that the person
-- broke a rule: resolving one as a violation deducts nothing.
INSERT INTO score_rules (alert_type, points, name_zh)
VALUES ('engine_fault', 0, '系统无法判定定位数据（非违规）')
ON CONFLICT (alert_type) DO NOTHING;
