-- fencewatch schema, version 1.
-- Times are timestamptz (UTC); coordinates WGS-84. Geometry is kept as GeoJSON (jsonb)
-- because the engine, not the database, does the geometry; no PostGIS needed.

CREATE TABLE offices (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('center', 'county', 'station')),
    parent_id   text REFERENCES offices(id)
);

CREATE TABLE officers (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    office_id   text REFERENCES offices(id),
    phone       text,
    role        text NOT NULL DEFAULT 'officer'
);

CREATE TABLE zones (
    id          text PRIMARY KEY,
    kind        text NOT NULL CHECK (kind IN ('jurisdiction', 'exclusion', 'home')),
    name        text NOT NULL DEFAULT '',
    geometry    jsonb NOT NULL,          -- GeoJSON, WGS-84
    source_crs  text NOT NULL DEFAULT 'wgs84' CHECK (source_crs IN ('wgs84', 'gcj02')),
    source      jsonb,                   -- the feature as imported, before conversion
    schedule    jsonb NOT NULL DEFAULT '[]',
    radius_m    double precision,
    properties  jsonb NOT NULL DEFAULT '{}',
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE supervisees (
    id              text PRIMARY KEY,
    name            text NOT NULL DEFAULT '',
    office_id       text REFERENCES offices(id),
    officer_id      text REFERENCES officers(id),
    level           text NOT NULL DEFAULT 'normal' CHECK (level IN ('strict', 'normal', 'lenient')),
    jurisdiction    text[] NOT NULL DEFAULT '{}',
    exclusion       text[] NOT NULL DEFAULT '{}',
    home_zone       text,
    term_start      date,
    term_end        date,
    status          text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'released')),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE devices (
    id          text PRIMARY KEY,
    kind        text NOT NULL DEFAULT 'tag' CHECK (kind IN ('tag', 'phone')),
    owntracks   text UNIQUE,             -- "<user>/<device>" for an OwnTracks phone
    model       text,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Who wore which device when; an open row (until IS NULL) is the current assignment.
CREATE TABLE device_assignments (
    id              bigserial PRIMARY KEY,
    device_id       text NOT NULL REFERENCES devices(id),
    supervisee_id   text NOT NULL REFERENCES supervisees(id),
    since           timestamptz NOT NULL DEFAULT now(),
    until           timestamptz,
    order_id        bigint
);
CREATE UNIQUE INDEX device_assignments_current ON device_assignments (device_id) WHERE until IS NULL;
CREATE INDEX device_assignments_supervisee ON device_assignments (supervisee_id);

-- 使用电子定位装置决定 (社区矫正法 Art. 29).
CREATE TABLE monitoring_orders (
    id              bigserial PRIMARY KEY,
    supervisee_id   text NOT NULL REFERENCES supervisees(id),
    ground          text NOT NULL,
    approved_by     text NOT NULL,
    starts_on       date NOT NULL,
    ends_on         date NOT NULL,
    renewals        jsonb NOT NULL DEFAULT '[]',
    ended_at        timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE leaves (
    id              text PRIMARY KEY,
    supervisee_id   text NOT NULL REFERENCES supervisees(id),
    starts_at       timestamptz NOT NULL,
    ends_at         timestamptz NOT NULL,
    destinations    text[] NOT NULL DEFAULT '{}',
    reason          text NOT NULL DEFAULT '',
    status          text NOT NULL DEFAULT 'approved'
                    CHECK (status IN ('requested', 'approved', 'refused', 'cancelled')),
    approved_by     text,
    returned_at     timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX leaves_supervisee ON leaves (supervisee_id, starts_at);

-- Every accepted fix, once. Partitioned by device time; (device_id, ts, seq) is the
-- dedup key because a QoS 1 redelivery repeats all three.
CREATE TABLE fixes (
    rid             bigserial,
    device_id       text NOT NULL,
    supervisee_id   text,
    seq             bigint NOT NULL,
    ts              timestamptz NOT NULL,
    received_at     timestamptz NOT NULL,
    lat             double precision,
    lon             double precision,
    acc             real,
    src             text,
    spd             real,
    hdg             real,
    batt            smallint,
    chg             boolean,
    strap           text,
    quality         integer NOT NULL DEFAULT 0,   -- geofence.model.Quality bitmask
    zone_state      text,                         -- in | out | uncertain, against the allowed area
    PRIMARY KEY (device_id, ts, seq)
) PARTITION BY RANGE (ts);
CREATE TABLE fixes_default PARTITION OF fixes DEFAULT;
CREATE INDEX fixes_supervisee_ts ON fixes (supervisee_id, ts);
CREATE INDEX fixes_rid ON fixes (rid);

CREATE TABLE device_events (
    rid             bigserial,
    device_id       text NOT NULL,
    seq             bigint NOT NULL,
    ts              timestamptz NOT NULL,
    received_at     timestamptz NOT NULL,
    type            text NOT NULL,
    supervisee_id   text,
    PRIMARY KEY (device_id, ts, seq, type)
);

CREATE TABLE alerts (
    id              bigserial PRIMARY KEY,
    key             text NOT NULL UNIQUE,         -- breach episode identity: one breach, one alert
    type            text NOT NULL,
    supervisee_id   text NOT NULL,
    device_id       text NOT NULL,
    ts              timestamptz NOT NULL,         -- device time of the confirming fix
    raised_at       timestamptz NOT NULL DEFAULT now(),
    status          text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'acknowledged', 'resolved')),
    active          boolean NOT NULL DEFAULT true, -- the condition still holds
    cleared_at      timestamptz,
    late            boolean NOT NULL DEFAULT false,
    severity        text NOT NULL DEFAULT 'normal',
    escalation      smallint NOT NULL DEFAULT 0,
    disposition     text CHECK (disposition IN ('true_violation', 'false_alarm', 'approved_absence', 'equipment_fault')),
    note            text,
    detail          jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX alerts_supervisee ON alerts (supervisee_id, ts DESC);
CREATE INDEX alerts_open ON alerts (status, raised_at) WHERE status <> 'resolved';

-- The alert's timeline: who did what when.
CREATE TABLE alert_events (
    id          bigserial PRIMARY KEY,
    alert_id    bigint NOT NULL REFERENCES alerts(id),
    at          timestamptz NOT NULL DEFAULT now(),
    actor       text NOT NULL,                -- 'engine', 'scheduler' or a token's subject
    action      text NOT NULL,                -- raised | cleared | acknowledged | resolved | escalated | notified
    detail      jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX alert_events_alert ON alert_events (alert_id, at);

-- Outbound notifications (webhook, SMS, downlink): written in the alert's transaction,
-- delivered and retried by the notifier, never lost.
CREATE TABLE outbox (
    id              bigserial PRIMARY KEY,
    channel         text NOT NULL,
    recipient       text NOT NULL DEFAULT '',
    payload         jsonb NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    attempts        integer NOT NULL DEFAULT 0,
    delivered_at    timestamptz,
    last_error      text
);
CREATE INDEX outbox_pending ON outbox (next_attempt_at) WHERE delivered_at IS NULL;
-- "Is this the first undelivered row of its (channel, recipient) stream?"
CREATE INDEX outbox_streams ON outbox (channel, recipient, id) WHERE delivered_at IS NULL;

CREATE TABLE rejected_messages (
    id          bigserial PRIMARY KEY,
    received_at timestamptz NOT NULL DEFAULT now(),
    topic       text NOT NULL,
    payload     bytea NOT NULL,
    reason      text NOT NULL
);
CREATE INDEX rejected_messages_received ON rejected_messages (received_at);

CREATE TABLE api_tokens (
    id          bigserial PRIMARY KEY,
    hash        text NOT NULL UNIQUE,         -- sha256 of the token; the token itself is never stored
    subject     text NOT NULL,
    role        text NOT NULL CHECK (role IN ('operator', 'officer', 'supervisor', 'auditor')),
    office_id   text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz,
    revoked_at  timestamptz
);

-- Append-only: who read or changed what, when, why.
CREATE TABLE audit_log (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    actor       text NOT NULL,
    role        text,
    action      text NOT NULL,
    object      text NOT NULL,
    detail      jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_at ON audit_log (at);

-- Engine state written behind: on restart the engine restores the newest snapshot and
-- re-judges the fixes and events committed after `last_rid` / `last_event_rid`.
CREATE TABLE engine_snapshots (
    id              bigserial PRIMARY KEY,
    taken_at        timestamptz NOT NULL DEFAULT now(),
    last_rid        bigint NOT NULL,
    last_event_rid  bigint NOT NULL,
    state           bytea NOT NULL
);
