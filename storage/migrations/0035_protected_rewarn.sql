-- The escalator looks every pass for protected_proximity alerts whose danger came back
-- since their protected person's last warning (alerts.escalation._REWARN): the few active
-- ones, found without reading the alerts table.
CREATE INDEX IF NOT EXISTS alerts_protected_active ON alerts (id)
    WHERE type = 'protected_proximity' AND active;
