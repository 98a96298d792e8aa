-- fencewatch schema, version 3: alerts reach people (routing, escalation, channels, storm
-- control, device commands) and the scheduled duties (reminders, the 25th-of-month
-- reports, the monthly assessment). Columns on existing tables are added IF NOT EXISTS and
-- nullable, so other migrations touching the same tables do not collide.

-- Who is told at each escalation level (alerts.routing): the responsible officer
-- (supervisees.officer_id), then the head of the person's justice station (司法所负责人),
-- then the county bureau (县级社区矫正机构): each office's head and its duty contacts.
ALTER TABLE offices
    ADD COLUMN IF NOT EXISTS head_officer_id text REFERENCES officers(id),
    ADD COLUMN IF NOT EXISTS duty_phone      text,
    ADD COLUMN IF NOT EXISTS duty_email      text;
ALTER TABLE officers
    ADD COLUMN IF NOT EXISTS email text;

-- For the monthly reports to the police: the police station (派出所) of the person's
-- residence, the ID number the no-exit list (法定不批准出境人员报备) needs, and the kind of
-- sentence (管制 / 缓刑 / 假释 / 暂予监外执行).
ALTER TABLE supervisees
    ADD COLUMN IF NOT EXISTS police_station text,
    ADD COLUMN IF NOT EXISTS id_number      text,
    ADD COLUMN IF NOT EXISTS sentence       text;

-- Persisted routing state (restart-safe timers). `routed` is false until the first
-- notification of the alert has been queued; `escalate_at` is when the next escalation step
-- is due while the alert stays open (NULL: none due). Rows from before this version count as
-- routed, so deploying this does not page anyone about old alerts.
ALTER TABLE alerts
    ADD COLUMN IF NOT EXISTS routed      boolean NOT NULL DEFAULT true,
    ADD COLUMN IF NOT EXISTS escalate_at timestamptz;
ALTER TABLE alerts ALTER COLUMN routed SET DEFAULT false;
CREATE INDEX IF NOT EXISTS alerts_unrouted ON alerts (id) WHERE NOT routed;
CREATE INDEX IF NOT EXISTS alerts_escalate_at ON alerts (escalate_at)
    WHERE status = 'open' AND escalate_at IS NOT NULL;

-- Every delivery attempt of a notification, against its alert (alerts.delivery).
CREATE TABLE IF NOT EXISTS deliveries (
    id          bigserial PRIMARY KEY,
    outbox_id   bigint NOT NULL,
    alert_id    bigint,          -- not a foreign key: a log, kept whatever the payload said
    channel     text NOT NULL,
    recipient   text NOT NULL,
    attempt     integer NOT NULL,
    outcome     text NOT NULL,   -- delivered | broker_acked | held | failed
    error       text,
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS deliveries_alert ON deliveries (alert_id, id);
CREATE INDEX IF NOT EXISTS deliveries_outbox ON deliveries (outbox_id);

-- Messages held back by the per-person rate limit or deduplication (alerts.ratelimit): not
-- sent alone, but folded into one summary message when the window has passed.
CREATE TABLE IF NOT EXISTS notification_holds (
    id            bigserial PRIMARY KEY,
    outbox_id     bigint NOT NULL UNIQUE,
    channel       text NOT NULL,
    recipient     text NOT NULL,
    supervisee_id text NOT NULL,
    alert_id      bigint,
    reason        text NOT NULL,   -- rate_limited | duplicate
    payload       jsonb NOT NULL,
    held_at       timestamptz NOT NULL,
    release_at    timestamptz NOT NULL,
    released_at   timestamptz
);
CREATE INDEX IF NOT EXISTS notification_holds_due ON notification_holds (release_at)
    WHERE released_at IS NULL;

-- Downlink commands (spec 4.1 em/<device>/cmd) and their acknowledgements: the broker's
-- PUBACK of the QoS 1 publish, then the device's own ack on em/<device>/cmd/ack.
CREATE TABLE IF NOT EXISTS device_commands (
    id              uuid PRIMARY KEY,
    device_id       text NOT NULL,
    supervisee_id   text,
    alert_id        bigint REFERENCES alerts(id),
    type            text NOT NULL CHECK (type IN ('vibrate', 'message', 'return_now', 'set_interval')),
    text            text,
    interval_s      integer,
    issued_by       text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    broker_acked_at timestamptz,
    device_acked_at timestamptz
);
CREATE INDEX IF NOT EXISTS device_commands_alert ON device_commands (alert_id);
CREATE INDEX IF NOT EXISTS device_commands_device ON device_commands (device_id, created_at);

-- Scheduled duties (duties.scheduler): one row per (duty, period), written in the same
-- transaction as the duty's work, so a run is done exactly once.
CREATE TABLE IF NOT EXISTS duty_runs (
    duty        text NOT NULL,
    period      text NOT NULL,
    due_at      timestamptz NOT NULL,
    ran_at      timestamptz NOT NULL DEFAULT now(),
    detail      jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (duty, period)
);

-- Reminders sent (防止超期解矫, leave returns): one per (kind, object, stage).
CREATE TABLE IF NOT EXISTS reminders (
    id            bigserial PRIMARY KEY,
    kind          text NOT NULL,     -- order_end | term_end | leave_return | leave_overdue
    ref           text NOT NULL,     -- the order, supervisee or leave id
    stage         text NOT NULL,     -- e.g. '7d:2025-12-01' (days before, and the end date)
    supervisee_id text NOT NULL,
    due_on        date NOT NULL,
    text          text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (kind, ref, stage)
);
CREATE INDEX IF NOT EXISTS reminders_supervisee ON reminders (supervisee_id, created_at);

-- Reports the duties produce (在册人数核对, 法定不批准出境人员报备), as CSV and XLSX.
CREATE TABLE IF NOT EXISTS reports (
    id             bigserial PRIMARY KEY,
    kind           text NOT NULL,    -- roster_reconciliation | no_exit_list
    period         text NOT NULL,    -- YYYY-MM
    office_id      text REFERENCES offices(id),
    police_station text NOT NULL DEFAULT '',
    title          text NOT NULL,
    as_of          timestamptz NOT NULL,
    rows           integer NOT NULL,
    summary        jsonb NOT NULL DEFAULT '{}',
    csv            bytea NOT NULL,
    xlsx           bytea NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX IF NOT EXISTS reports_unique
    ON reports (kind, period, COALESCE(office_id, ''), police_station);

-- Monthly assessment (每月计分考评): the deduction for a confirmed violation, by alert type;
-- '*' is the fallback. Defaults documented in duties/assessment.py; change them here or
-- through PUT /api/v1/assessment/rules/{type}.
CREATE TABLE IF NOT EXISTS score_rules (
    alert_type  text PRIMARY KEY,
    points      integer NOT NULL CHECK (points >= 0),
    name_zh     text NOT NULL DEFAULT '',
    updated_by  text,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO score_rules (alert_type, points, name_zh) VALUES
    ('jurisdiction_exit', 5, '未经批准离开执行地'),
    ('exclusion_enter',   5, '违反禁止令进入禁止区域'),
    ('curfew_breach',     3, '违反居家时段规定'),
    ('strap_tamper',     10, '擅自拆除、破坏电子定位装置'),
    ('device_offline',    3, '电子定位装置关机、失联'),
    ('no_fix',            1, '电子定位装置无定位信号'),
    ('low_battery',       1, '未按规定为电子定位装置充电'),
    ('sos',               0, '紧急求助'),
    ('*',                 2, '其他违反监督管理规定的行为')
ON CONFLICT (alert_type) DO NOTHING;

-- Violation records: an alert resolved as a true violation becomes one, with the deduction
-- in force when it was resolved. Written by a trigger, so no path that resolves alerts can
-- forget it.
CREATE TABLE IF NOT EXISTS violations (
    id            bigserial PRIMARY KEY,
    alert_id      bigint NOT NULL UNIQUE REFERENCES alerts(id),
    supervisee_id text NOT NULL,
    type          text NOT NULL,
    occurred_at   timestamptz NOT NULL,
    points        integer NOT NULL,
    rule          text NOT NULL,
    recorded_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS violations_supervisee ON violations (supervisee_id, occurred_at);

CREATE OR REPLACE FUNCTION fencewatch_record_violation() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status = 'resolved' AND NEW.disposition = 'true_violation' THEN
        INSERT INTO violations (alert_id, supervisee_id, type, occurred_at, points, rule)
        SELECT NEW.id, NEW.supervisee_id, NEW.type, NEW.ts, r.points, r.alert_type
        FROM score_rules r
        WHERE r.alert_type IN (NEW.type, '*')
        ORDER BY (r.alert_type = '*')
        LIMIT 1
        ON CONFLICT (alert_id) DO NOTHING;
    END IF;
    RETURN NEW;
END $$;

DROP TRIGGER IF EXISTS alerts_record_violation ON alerts;
CREATE TRIGGER alerts_record_violation
    AFTER INSERT OR UPDATE OF status, disposition ON alerts
    FOR EACH ROW EXECUTE FUNCTION fencewatch_record_violation();

-- Alerts already resolved as true violations.
INSERT INTO violations (alert_id, supervisee_id, type, occurred_at, points, rule)
SELECT a.id, a.supervisee_id, a.type, a.ts, r.points, r.alert_type
FROM alerts a
CROSS JOIN LATERAL (
    SELECT points, alert_type FROM score_rules
    WHERE alert_type IN (a.type, '*') ORDER BY (alert_type = '*') LIMIT 1) r
WHERE a.status = 'resolved' AND a.disposition = 'true_violation'
ON CONFLICT (alert_id) DO NOTHING;
