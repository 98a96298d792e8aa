"""Evidence bundles (证据包): one alert's or one person's location data over a time range,
with the alert timeline and the rules in force, as a PDF and machine-readable files in one
zip, under a manifest of SHA-256 hashes signed with the service's Ed25519 key, so a court
or procuratorate can check that nothing was changed after export (docs/security.md)."""
