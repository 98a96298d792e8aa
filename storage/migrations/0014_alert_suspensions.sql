-- fencewatch schema, version 14 (issue 15.11): suspension windows (暂停告警).
--
-- An officer asks for a person's alerts of some types to be held for a stated reason
-- (hospital, detention, court appearance) until an end time; a supervisor approves it, and
-- only then does it take effect. The engine judges and records as ever: an alert that
-- opens while a suspension covers it is recorded but held — no SMS, e-mail, webhook or
-- escalation — until the window ends or is revoked (alerts.escalation releases it).
CREATE TABLE alert_suspensions (
    id              text PRIMARY KEY,
    supervisee_id   text NOT NULL REFERENCES supervisees(id),
    types           text[] NOT NULL DEFAULT '{}',   -- empty: every type that may be held
    reason          text NOT NULL CHECK (reason IN ('hospital', 'detention', 'court', 'other')),
    reason_text     text NOT NULL DEFAULT '',
    starts_at       timestamptz NOT NULL,
    ends_at         timestamptz NOT NULL CHECK (ends_at > starts_at),
    status          text NOT NULL DEFAULT 'requested'
                    CHECK (status IN ('requested', 'approved', 'refused', 'revoked')),
    requested_by    text NOT NULL,
    approved_by     text,
    refused_by      text,
    refusal_reason  text,
    decided_at      timestamptz,
    revoked_by      text,
    revoked_at      timestamptz,
    revoke_reason   text,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX alert_suspensions_person ON alert_suspensions (supervisee_id, ends_at)
    WHERE status = 'approved';

-- A held alert: `hold` is the suspension that held it as it stood (id, reason, until), kept
-- after release for the record; `held_until` is when the escalator releases it. An alert
-- is held while it has a hold and is not yet routed.
ALTER TABLE alerts
    ADD COLUMN IF NOT EXISTS hold       jsonb,
    ADD COLUMN IF NOT EXISTS held_until timestamptz;
CREATE INDEX IF NOT EXISTS alerts_held ON alerts (held_until) WHERE NOT routed;
