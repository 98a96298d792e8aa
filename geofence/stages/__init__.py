"""The rule stages, one concern each; geofence.pipeline puts them in order."""
