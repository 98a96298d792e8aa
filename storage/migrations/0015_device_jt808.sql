-- fencewatch schema, version 15 (issue 18): terminals that speak JT/T 808 over TCP to the
-- gateway (ingest/jt808/gateway.py) are known by their phone number (终端手机号), as OsmAnd
-- phones are by the id they send; leading zeros dropped, so a 2013 terminal's 12 digits
-- and a 2019 terminal's 20 name the same number.
ALTER TABLE devices ADD COLUMN IF NOT EXISTS jt808 text UNIQUE;
-- What its positions are in: JT/T 808 says WGS-84, some terminals send GCJ-02.
ALTER TABLE devices ADD COLUMN IF NOT EXISTS crs text NOT NULL DEFAULT 'wgs84'
    CHECK (crs IN ('wgs84', 'gcj02'));
-- The terminal's authentication code (鉴权码), given to it on registration: only its hash
-- ($7$, as the broker's password file keeps device passwords), never the code.
ALTER TABLE devices ADD COLUMN IF NOT EXISTS jt808_auth text;
-- Until when the terminal may register (and so be given a code): opened by
-- `fencewatch devices provision` for terminals without a code, and by --rotate.
ALTER TABLE devices ADD COLUMN IF NOT EXISTS jt808_enrol_until timestamptz;
