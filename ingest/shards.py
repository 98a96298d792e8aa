"""Which engine judges whom: supervisees split into shards, each shard one MQTT session.

A person, not a device, is the unit, so a person's tag and phone are judged by one engine
and one breach is one alert. With one shard the session subscribes the wildcard topics;
with several, each session subscribes the exact topics of its people's devices, so the
broker itself hands each device's messages to one process, in order, and keeps them in the
shard's persistent session while no process holds it (docs/scaling.md)."""

from __future__ import annotations

import zlib

import msgspec

from geofence.ruleset import RuleSet
from ingest import topics


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
            return set(topics.UPLINK)
        subscribed = {
            topics.tag(device, kind)
            for device, owner in rules.device_owner.items()
            if self.owns(owner)
            for kind in (topics.LOC, topics.EVT, topics.CMD_ACK)
        }
        subscribed.update(
            topics.owntracks(user_device, sub)
            for user_device, device in rules.owntracks.items()
            if self.owns(rules.device_owner.get(device, ""))
            for sub in ("", *topics.OWNTRACKS_SUBTOPICS)
        )
        subscribed.update(
            topics.osmand(device)
            for device in rules.osmand.values()
            if self.owns(rules.device_owner.get(device, ""))
        )
        # A protected person's phone is judged beside the supervisee it protects them from.
        for p in rules.protected:
            if self.owns(p.supervisee):
                if p.device.owntracks:
                    subscribed.update(
                        topics.owntracks(p.device.owntracks, sub)
                        for sub in ("", *topics.OWNTRACKS_SUBTOPICS)
                    )
                if p.device.osmand:
                    subscribed.add(topics.osmand(p.device.id))
        return subscribed

    def foreign(self, topic: str, rules: RuleSet) -> bool:
        """A message this shard is subscribed to but another shard judges: a subscription
        left in the persistent session from before the device changed hands."""
        if self.count == 1:
            return False
        named = topics.parse(topic)
        if named is None:
            return False
        device = named.device
        if named.protocol == topics.OWNTRACKS:
            device = rules.owntracks.get(device, "")
        owner = rules.device_owner.get(device)
        return owner is not None and not self.owns(owner)
