-- fencewatch schema, version 8: phones that report over HTTP in the OsmAnd protocol
-- (Traccar Client, spec 4.1b) are known by the id they send, as OwnTracks phones are by
-- their topic. One phone per id: the listener maps each request to exactly one device.
ALTER TABLE devices ADD COLUMN osmand text UNIQUE;
