-- A supervisee's workplace (工作单位, issue 17): a zone id (a JSON string) or a place
-- {"lat", "lon", "radius_m", "name"} (an object). Co-workers there are no gathering.
ALTER TABLE supervisees ADD COLUMN workplace jsonb
    CHECK (workplace IS NULL OR jsonb_typeof(workplace) IN ('string', 'object'));
