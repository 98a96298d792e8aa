"""A simulated fleet on a broker with per-device accounts: one MQTT connection per device.

On a broker set up as docs/security.md says (and the embedded one), a device logs in with
its device id and its own password and may publish only on its own topics, so a shared
connection cannot speak for the fleet. `DeviceLinks` opens one `MqttLink` per device and
is itself a link (simulators.tag.Link): each message goes out on the connection of the
device its topic names, and commands to any device arrive in one queue, as from a shared
link. One paho thread per device: fine for a demo's tens of tags, not for benchmarks of
thousands (those use a broker open to one shared publisher).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

from fencewatch.config import MqttAddress
from ingest import topics
from simulators.mqtt_link import MAX_UNACKED, MqttLink
from simulators.tag import LiveTag


def device_part(topic: str) -> tuple[str, str] | None:
    """The device a topic names: its protocol and its name there."""
    named = topics.parse(topic)
    return None if named is None else (named.protocol, named.device)


class DeviceLinks:
    def __init__(
        self,
        url: str,
        tags: Iterable[LiveTag],
        passwords: dict[str, str],
        max_unacked: int = MAX_UNACKED,
    ) -> None:
        """Log each tag in as its device with its password from `passwords` (device id →
        password), on the broker of `url`."""
        address = MqttAddress.parse(url)
        self.max_unacked = max_unacked
        self.commands: deque[tuple[str, bytes]] = deque()
        self._links: dict[tuple[str, str] | None, MqttLink] = {}
        for tag in tags:
            device = tag.plan.id
            link = MqttLink(address.url(device, passwords[device]), device, max_unacked)
            link.commands = self.commands  # deque appends are atomic: one queue for all
            self._links[device_part(tag.command_topic)] = link

    @property
    def acked(self) -> int:
        return sum(link.acked for link in self._links.values())

    @property
    def unacked(self) -> int:
        return sum(link.unacked for link in self._links.values())

    def ready(self) -> bool:
        return self.unacked < self.max_unacked

    def publish(self, topic: str, payload: bytes) -> bool:
        link = self._links.get(device_part(topic))
        # A device whose connection is down keeps its messages and uploads them later.
        return link is not None and link.connected.is_set() and link.publish(topic, payload)

    def close(self, drain_s: float = 5.0) -> None:
        links = list(self._links.values())
        if links:
            with ThreadPoolExecutor(max_workers=min(64, len(links))) as pool:
                list(pool.map(lambda link: link.close(drain_s), links))
