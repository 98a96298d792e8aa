-- What a device said about an event, where it said more than its type: an OwnTracks
-- transition's region and direction, a phone's status report, the connection an lwt ends.
ALTER TABLE device_events ADD COLUMN detail jsonb;
