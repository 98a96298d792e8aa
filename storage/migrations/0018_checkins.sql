-- Check-ins (定位签到, docs/rules.md "Check-ins"): scheduled and random requests for a
-- fresh fix from the person's phone within a deadline, optionally with a face
-- verification result from the supervision app. Only the verdict is stored, never images.

-- Schedules by supervision level (scope 'level:<level>') and per person
-- ('supervisee:<id>', which replaces the level's). `times` are local HH:MM, every day;
-- `random_per_day` more fall at random minutes within waking hours.
CREATE TABLE IF NOT EXISTS checkin_schedules (
    scope          text PRIMARY KEY,
    times          text[] NOT NULL DEFAULT '{}',
    random_per_day integer NOT NULL DEFAULT 0 CHECK (random_per_day BETWEEN 0 AND 24),
    waking_from    text NOT NULL DEFAULT '08:00',
    waking_to      text NOT NULL DEFAULT '21:00',
    deadline_s     integer NOT NULL DEFAULT 900 CHECK (deadline_s BETWEEN 60 AND 86400),
    face           boolean NOT NULL DEFAULT false,   -- a face verification is required too
    updated_by     text,
    updated_at     timestamptz NOT NULL DEFAULT now()
);

-- One row per check-in asked. `status`: pending until answered (a good fresh fix from a
-- phone, and a passed verification when `face`), or missed at the deadline (then an alert).
CREATE TABLE IF NOT EXISTS checkins (
    id            bigserial PRIMARY KEY,
    supervisee_id text NOT NULL,
    due_at        timestamptz NOT NULL,
    deadline_at   timestamptz NOT NULL,
    kind          text NOT NULL CHECK (kind IN ('fixed', 'random')),
    face          boolean NOT NULL DEFAULT false,
    sent_via      text[] NOT NULL DEFAULT '{}',
    status        text NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'answered', 'missed')),
    reason        text,             -- why missed: no_fix, poor_fix, face_failed, no_face
    fix_device    text,
    fix_ts        timestamptz,
    fix_lat       double precision,
    fix_lon       double precision,
    fix_acc       real,
    face_verdict  text CHECK (face_verdict IN ('pass', 'fail')),
    face_at       timestamptz,
    settled_at    timestamptz,
    alert_id      bigint,
    UNIQUE (supervisee_id, due_at)
);
CREATE INDEX IF NOT EXISTS checkins_pending ON checkins (deadline_at) WHERE status = 'pending';

-- The person's own mobile number, for check-in requests by SMS.
ALTER TABLE supervisees ADD COLUMN IF NOT EXISTS phone text;
