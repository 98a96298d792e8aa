-- What the officers call a protected person (e.g. 王女士), so the person file can say who
-- a registration is for; optional, like their number, and deleted with the registration
-- when the protection ends (storage.repo.proximity.purge_protected). The engine never
-- reads it.
ALTER TABLE protected_persons ADD COLUMN IF NOT EXISTS name text;
