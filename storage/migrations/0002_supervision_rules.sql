-- fencewatch schema, version 2: the supervision rules of spec section 2 in the records —
-- leave approval by level, recurring permits, monitoring-order decisions, heightened periods.

-- A city office (市级社区矫正机构) approves what a county may not (long or repeated leave).
ALTER TABLE offices DROP CONSTRAINT offices_kind_check;
ALTER TABLE offices ADD CONSTRAINT offices_kind_check
    CHECK (kind IN ('center', 'city', 'county', 'station'));

-- Leave is applied for (requested), then approved or refused by a level high enough for it
-- (supervision.leave.check_leave). A recurring permit (经常性跨市县活动) is a leave of kind
-- 'permit' with a weekly schedule: its places are allowed only in those hours.
-- Rows from before this version were recorded approved; they keep that status.
ALTER TABLE leaves
    ADD COLUMN kind           text NOT NULL DEFAULT 'leave' CHECK (kind IN ('leave', 'permit')),
    ADD COLUMN schedule       jsonb NOT NULL DEFAULT '[]',
    ADD COLUMN level          text CHECK (level IN ('station', 'county', 'city')),  -- who must approve
    ADD COLUMN warnings       jsonb NOT NULL DEFAULT '[]',  -- the rule check's, English and 中文
    ADD COLUMN applied_by     text,
    ADD COLUMN decided_at     timestamptz,
    ADD COLUMN refused_by     text,
    ADD COLUMN refusal_reason text;
-- The overdue list: approved, ended, never reported back.
CREATE INDEX leaves_unreturned ON leaves (ends_at) WHERE status = 'approved' AND returned_at IS NULL;

-- Who recorded the decision (a token's subject; approved_by is the county head who approved
-- it), and the removal (解除) with its reason.
ALTER TABLE monitoring_orders
    ADD COLUMN decided_by  text,
    ADD COLUMN ended_by    text,
    ADD COLUMN end_reason  text,
    -- The five legal grounds are checked by supervision.orders.new_order, the one list of them.
    ADD CONSTRAINT monitoring_orders_dates_check CHECK (ends_on >= starts_on);
CREATE INDEX monitoring_orders_supervisee ON monitoring_orders (supervisee_id, starts_on);

-- Heightened periods (重大节假日、重要会议期间): stricter policy for everyone between the two
-- times; `policy` holds geofence.policy.Policy fields to override.
CREATE TABLE heightened_periods (
    id          text PRIMARY KEY,
    name        text NOT NULL DEFAULT '',
    starts_at   timestamptz NOT NULL,
    ends_at     timestamptz NOT NULL CHECK (ends_at > starts_at),
    policy      jsonb NOT NULL DEFAULT '{}',
    updated_by  text,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX heightened_periods_ends ON heightened_periods (ends_at);
