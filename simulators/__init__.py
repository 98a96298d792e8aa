"""Device simulators: realistic ankle tags and phones, fleets and scored scenarios."""
