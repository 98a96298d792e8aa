-- fencewatch schema, version 12 (issue 15): why a false alarm was one. Resolving a breach
-- as a false alarm while the service still sees the person outside needs a stated reason
-- (alerts/record.py); it is kept on the alert beside its disposition and note.
ALTER TABLE alerts ADD COLUMN IF NOT EXISTS reason text
    CHECK (reason IN ('verified_in_place', 'position_drift', 'zone_error'));

-- Breaches resolved while the person is still outside (仍在越界): every console loads them
-- with the alerts still to be worked, so they are found without reading every resolved one.
CREATE INDEX IF NOT EXISTS alerts_still_active ON alerts (raised_at)
    WHERE status = 'resolved' AND active;
