-- fencewatch schema, version 11 (issue 13): who a heightened period applies to, and which
-- office made a zone.

-- These offices and every office below them: whom a heightened period scoped to `roots`
-- applies to (heightened_periods.offices, version 9). Ids that name no office stay in,
-- matching nobody: a period never widens to everyone.
CREATE OR REPLACE FUNCTION fencewatch_office_subtrees(roots text[]) RETURNS text[]
LANGUAGE sql STABLE AS $$
    WITH RECURSIVE sub(id) AS (
        SELECT unnest(roots)
        UNION SELECT o.id FROM offices o JOIN sub ON o.parent_id = sub.id)
    SELECT coalesce(array_agg(id), '{}') FROM sub
$$;

-- The office that made a zone through the API (NULL: the centre, or `fencewatch load`): a
-- scoped caller reads and changes the zones its offices made (api/routes/zones.py).
ALTER TABLE zones ADD COLUMN IF NOT EXISTS office_id text;
