-- Locate now (立即定位, docs/rules.md): an operator asks every device of a person for an
-- immediate fix; the request and each device's answer (its next fix) stay in the case
-- record.

-- A tag is asked with the downlink command `locate` (alerts.downlink).
ALTER TABLE device_commands DROP CONSTRAINT IF EXISTS device_commands_type_check;
ALTER TABLE device_commands ADD CONSTRAINT device_commands_type_check CHECK (type IN (
    'vibrate', 'message', 'return_now', 'set_interval', 'report_location', 'set_monitoring',
    'locate'));

CREATE TABLE IF NOT EXISTS locate_requests (
    id            bigserial PRIMARY KEY,
    supervisee_id text NOT NULL,
    alert_id      bigint REFERENCES alerts(id),   -- asked from this alert, if any
    requested_by  text NOT NULL,
    requested_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS locate_requests_supervisee
    ON locate_requests (supervisee_id, requested_at);

-- One row per device the person wore when asked. `command` is what was sent (NULL: the
-- device has no downlink, e.g. an OsmAnd phone; its next report still answers). The answer
-- is written by ingest in the transaction that commits the fix (alerts.locate). No
-- foreign key to device_commands: a failed reference must never stop a commit of fixes.
CREATE TABLE IF NOT EXISTS locate_devices (
    request_id  bigint NOT NULL REFERENCES locate_requests(id),
    device_id   text NOT NULL,
    command     uuid,
    answered_at timestamptz,
    fix_ts      timestamptz,
    lat         double precision,
    lon         double precision,
    acc         real,
    PRIMARY KEY (request_id, device_id)
);
CREATE INDEX IF NOT EXISTS locate_devices_pending ON locate_devices (device_id)
    WHERE answered_at IS NULL;
