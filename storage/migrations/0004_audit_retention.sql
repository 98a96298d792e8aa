-- fencewatch schema, version 4: the audit log becomes append-only and scoped, and the
-- retention purge gets the index it needs.

-- Whose data an audit row is about, so a county bureau can read the audit of its own
-- people and no one else's. Filled in on insert from the object ("supervisee:P1",
-- "alert:12", "leave:L3", "order:4", "device:T1", "office:S1", "officer:O2") as it stands
-- at that moment; a row about no one in particular (a zone, a token) has neither and is
-- for the unscoped auditor only.
ALTER TABLE audit_log
    ADD COLUMN supervisee_id text,
    ADD COLUMN office_id     text;

CREATE FUNCTION audit_log_scope(obj text, OUT supervisee text, OUT office text)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_kind text := split_part(obj, ':', 1);
    v_ref  text := substr(obj, length(v_kind) + 2);
BEGIN
    IF position(':' IN obj) = 0 OR v_ref = '' THEN
        RETURN;
    END IF;
    IF v_kind = 'supervisee' THEN
        supervisee := v_ref;
    ELSIF v_kind = 'alert' AND v_ref ~ '^[0-9]{1,18}$' THEN
        SELECT a.supervisee_id INTO supervisee FROM alerts a WHERE a.id = v_ref::bigint;
    ELSIF v_kind = 'order' AND v_ref ~ '^[0-9]{1,18}$' THEN
        SELECT o.supervisee_id INTO supervisee FROM monitoring_orders o WHERE o.id = v_ref::bigint;
    ELSIF v_kind = 'leave' THEN
        SELECT l.supervisee_id INTO supervisee FROM leaves l WHERE l.id = v_ref;
    ELSIF v_kind = 'device' THEN
        -- The current wearer, else the last one (an unassignment is audited after it).
        SELECT d.supervisee_id INTO supervisee FROM device_assignments d
         WHERE d.device_id = v_ref ORDER BY d.until IS NULL DESC, d.since DESC, d.id DESC LIMIT 1;
    ELSIF v_kind = 'office' THEN
        office := v_ref;
    ELSIF v_kind = 'officer' THEN
        SELECT o.office_id INTO office FROM officers o WHERE o.id = v_ref;
    END IF;
    IF supervisee IS NOT NULL AND office IS NULL THEN
        SELECT s.office_id INTO office FROM supervisees s WHERE s.id = supervisee;
    END IF;
END $$;

-- Rows written before this version get their scope once, before the log is sealed below.
UPDATE audit_log SET (supervisee_id, office_id) =
    (SELECT s.supervisee, s.office FROM audit_log_scope(object) s);

CREATE FUNCTION audit_log_fill_scope() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    found record;
BEGIN
    IF NEW.supervisee_id IS NULL AND NEW.office_id IS NULL THEN
        SELECT * INTO found FROM audit_log_scope(NEW.object);
        NEW.supervisee_id := found.supervisee;
        NEW.office_id := found.office;
    ELSIF NEW.office_id IS NULL THEN
        SELECT s.office_id INTO NEW.office_id FROM supervisees s WHERE s.id = NEW.supervisee_id;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER audit_log_scope BEFORE INSERT ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_fill_scope();

-- Append-only: no UPDATE, DELETE or TRUNCATE, from anyone, the retention job included (it
-- purges location data and records that it did; the record itself stays).
CREATE FUNCTION audit_log_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'audit rows are never changed or removed';
END $$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_refuse_change();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse_change();

-- The audit query's filters, newest first (api/routes/audit.py).
CREATE INDEX audit_log_office ON audit_log (office_id, id);
CREATE INDEX audit_log_supervisee ON audit_log (supervisee_id, id);
CREATE INDEX audit_log_actor ON audit_log (actor, id);
CREATE INDEX audit_log_object ON audit_log (object, id);

-- The retention purge deletes a person's device events (fencewatch/retention.py); fixes
-- already have (supervisee_id, ts).
CREATE INDEX device_events_supervisee_ts ON device_events (supervisee_id, ts);
