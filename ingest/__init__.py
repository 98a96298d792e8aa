"""MQTT ingest: decode, validate, dedupe and commit device messages, ack after commit."""
