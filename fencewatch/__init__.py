"""fencewatch: GPS electronic monitoring and geofences for community corrections."""
