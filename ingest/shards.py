"""Which engine judges whom: supervisees split into shards, each shard one MQTT session.

A person, not a device, is the unit, so a person's tag and phone are judged by one engine
and one breach is one alert. With one shard the session subscribes the wildcard topics;
with several, each session subscribes the exact topics of its people's devices, so the
broker itself hands each device's messages to one process, in order, and keeps them in the
shard's persistent session while no process holds it (docs/scaling.md)."""

from __future__ import annotations

import zlib

import msgspec

from alerts.downlink import ACK_TOPIC
from geofence.ruleset import RuleSet
from ingest import osmand
from ingest.decode import OWNTRACKS_SUBTOPICS

WILDCARDS = (
    "em/+/loc",
    "em/+/evt",
    ACK_TOPIC,
    "owntracks/+/+",
    *(f"owntracks/+/+/{sub}" for sub in OWNTRACKS_SUBTOPICS),
    # OsmAnd requests, published by the HTTP listener for the shard that judges the
    # phone's wearer (ingest.osmand_http)
    osmand.topic("+"),
)


def shard_of(supervisee: str, count: int) -> int:
    # crc32, not hash(): every process must agree, and str hashes differ per process.
    return zlib.crc32(supervisee.encode()) % count


class Shard(msgspec.Struct, frozen=True):
    index: int
    count: int

    @property
    def connection(self) -> str:
        """The shard among the service's MQTT connections: its login (MqttAddress.login)."""
        return f"{self.index}of{self.count}"

    def name(self, base: str) -> str:
        """The shard's MQTT client id (its persistent session) and lease name."""
        return base if self.count == 1 else f"{base}-{self.connection}"

    def owns(self, supervisee: str) -> bool:
        return self.count == 1 or shard_of(supervisee, self.count) == self.index

    def topics(self, rules: RuleSet) -> set[str]:
        if self.count == 1:
            return set(WILDCARDS)
        topics = {
            f"em/{device}/{kind}"
            for device, owner in rules.device_owner.items()
            if self.owns(owner)
            for kind in ("loc", "evt", "cmd/ack")
        }
        topics.update(
            f"owntracks/{user_device}{sub}"
            for user_device, device in rules.owntracks.items()
            if self.owns(rules.device_owner.get(device, ""))
            for sub in ("", *(f"/{suffix}" for suffix in OWNTRACKS_SUBTOPICS))
        )
        topics.update(
            osmand.topic(device)
            for device in rules.osmand.values()
            if self.owns(rules.device_owner.get(device, ""))
        )
        return topics

    def foreign(self, topic: str, rules: RuleSet) -> bool:
        """A message this shard is subscribed to but another shard judges: a subscription
        left in the persistent session from before the device changed hands."""
        if self.count == 1:
            return False
        parts = topic.split("/")
        if parts[0] == "owntracks":
            device = rules.owntracks.get("/".join(parts[1:3]), "")
        else:
            device = parts[1] if len(parts) > 1 else ""
        owner = rules.device_owner.get(device)
        return owner is not None and not self.owns(owner)
