-- Protected persons (被保护人, issue 17): the person a no-contact order protects and their
-- phone (OwnTracks or OsmAnd), registered to the order and never a supervisee's device.
-- Their phone's fixes are stored nowhere: they reach the proximity check through the
-- sightings stream only, and an alert's detail.protected is the one copy of where they
-- were (docs/security.md). Deleting a row (order ended, purged) purges those copies too
-- (storage/repo/protected.py).
CREATE TABLE protected_persons (
    id            text PRIMARY KEY,
    supervisee_id text NOT NULL REFERENCES supervisees (id),
    device_id     text NOT NULL UNIQUE,
    owntracks     text UNIQUE,
    osmand        text UNIQUE,
    distance_m    double precision NOT NULL DEFAULT 500 CHECK (distance_m > 0),
    confirm_s     integer NOT NULL DEFAULT 60 CHECK (confirm_s > 0),
    sms           text,  -- their number: warned at once when an alert is raised, if set
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CHECK (owntracks IS NOT NULL OR osmand IS NOT NULL)
);
