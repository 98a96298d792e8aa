"""The geofence engine: pure (rules, state, fix) -> (state, verdicts), no I/O."""
