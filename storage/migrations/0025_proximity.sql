-- People near people (issue 17): no-contact orders between supervisees (禁止接触) and the
-- gathering rule (聚集), as roster.json gives them (`fencewatch load`, spec 4.2).
CREATE TABLE no_contact_orders (
    id          text PRIMARY KEY,
    people      text[] NOT NULL CHECK (cardinality(people) >= 2),
    distance_m  double precision NOT NULL DEFAULT 200 CHECK (distance_m > 0),
    confirm_s   integer NOT NULL DEFAULT 300 CHECK (confirm_s > 0),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- One row or none: none, gatherings are not watched.
CREATE TABLE gathering_rule (
    singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    size        integer NOT NULL CHECK (size >= 2),
    radius_m    double precision NOT NULL CHECK (radius_m > 0),
    hold_s      integer NOT NULL CHECK (hold_s > 0),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
