-- Pursuit (docs/rules.md): while a breach is pending or open the device is asked to report
-- faster, and put back to its normal reporting once it ends.

-- A tag's normal seconds between fixes: what pursuit restores. An operator's set_interval
-- (api/routes/commands.py) changes it.
ALTER TABLE devices
    ADD COLUMN IF NOT EXISTS report_interval_s integer NOT NULL DEFAULT 30
        CHECK (report_interval_s BETWEEN 5 AND 86400);

-- OwnTracks phones take their own commands on owntracks/<user>/<device>/cmd:
-- reportLocation, and setConfiguration of the monitoring mode (1 significant, 2 move; with
-- move mode, interval_s is its moveModeLocatorInterval).
ALTER TABLE device_commands DROP CONSTRAINT IF EXISTS device_commands_type_check;
ALTER TABLE device_commands ADD CONSTRAINT device_commands_type_check CHECK (type IN (
    'vibrate', 'message', 'return_now', 'set_interval', 'report_location', 'set_monitoring'));
ALTER TABLE device_commands ADD COLUMN IF NOT EXISTS monitoring smallint;

-- Devices being pursued. A row exists from the first "pursue" until the normal interval is
-- restored; `relaxed_at` is when the engine said "relax", and the restore waits until the
-- pursuit has held for FENCEWATCH_PURSUIT_HOLD_S (alerts.pursuit). No foreign key: a
-- failed reference must never stop a commit of fixes.
CREATE TABLE IF NOT EXISTS device_pursuits (
    device_id     text PRIMARY KEY,
    supervisee_id text NOT NULL,
    interval_s    integer NOT NULL,
    since_ts      timestamptz NOT NULL,           -- device time of the fix that started it
    pursued_at    timestamptz NOT NULL DEFAULT now(),
    relaxed_at    timestamptz
);
CREATE INDEX IF NOT EXISTS device_pursuits_relaxed ON device_pursuits (relaxed_at)
    WHERE relaxed_at IS NOT NULL;
