"""The MQTT topics devices and the service speak on (spec 4.1, 4.1b), built and read here
and nowhere else.

    em/<device>/loc              a tag's fixes                  tag → service
    em/<device>/evt              a tag's device events          tag → service
    em/<device>/cmd              commands to a tag              service → tag (alerts.downlink)
    em/<device>/cmd/ack          the tag's acknowledgements     tag → service
    owntracks/<user>/<device>    an OwnTracks phone's messages  phone → service
      …/event, …/status          its transitions and status reports, kept with its history
      …/cmd                      the app's own commands         service → phone
    osmand/<device>              an OsmAnd request, published by the HTTP listener for the
                                 shard that judges the phone's wearer (ingest.osmand_http)

In `pings.jsonl` an OsmAnd request is on `osmand` alone: recorded at the listener, before
it knows which device sent it. A tag or OsmAnd phone is named by its device id, one topic
level; an OwnTracks phone by the two levels the app publishes under, "<user>/<device>",
which the registry maps to a device id.
"""

from __future__ import annotations

from typing import NamedTuple

TAG = "em"
OWNTRACKS = "owntracks"
OSMAND = "osmand"
ANY = "+"  # MQTT's single-level wildcard, standing for any one device

LOC, EVT, CMD, CMD_ACK = "loc", "evt", "cmd", "cmd/ack"
_TAG_KINDS = frozenset({LOC, EVT, CMD, CMD_ACK})
# Sub-topics the apps publish on besides `owntracks/<user>/<device>` that carry something
# kept: transitions (`…/event`) and status reports (`…/status`).
OWNTRACKS_SUBTOPICS = ("event", "status")
_OWNTRACKS_KINDS = frozenset({*OWNTRACKS_SUBTOPICS, CMD})


def tag(device: str, kind: str) -> str:
    return f"{TAG}/{device}/{kind}"


def owntracks(user_device: str, kind: str = "") -> str:
    """A phone's own topic, or with `kind` one of its sub-topics."""
    return f"{OWNTRACKS}/{user_device}/{kind}" if kind else f"{OWNTRACKS}/{user_device}"


def osmand(device: str) -> str:
    return f"{OSMAND}/{device}"


_ANY_PHONE = f"{ANY}/{ANY}"
# Every device's uplink: what ingest subscribes to when one shard judges everyone.
UPLINK = (
    tag(ANY, LOC),
    tag(ANY, EVT),
    tag(ANY, CMD_ACK),
    owntracks(_ANY_PHONE),
    *(owntracks(_ANY_PHONE, sub) for sub in OWNTRACKS_SUBTOPICS),
    osmand(ANY),
)
# Every device's commands: what the service publishes on and devices subscribe to.
COMMANDS = (tag(ANY, CMD), owntracks(_ANY_PHONE, CMD))


class Topic(NamedTuple):
    protocol: str  # TAG, OWNTRACKS or OSMAND
    device: str  # a device id; an OwnTracks phone's "<user>/<device>"; "" on `osmand` alone
    kind: str  # a tag's LOC, EVT, CMD or CMD_ACK; an OwnTracks sub-topic or CMD, else ""


def protocol(topic: str) -> str:
    """The protocol a topic's messages speak (TAG, OWNTRACKS, OSMAND), by its first level:
    for topics known to be of the forms above."""
    return topic.partition("/")[0]


def parse(topic: str) -> Topic | None:
    """What a topic of the forms above names, or None for any other topic. Names are not
    checked here: whether a device id is valid and registered is the decoder's to say."""
    first, _, rest = topic.partition("/")
    if first == TAG:
        device, _, kind = rest.partition("/")
        if kind in _TAG_KINDS:
            return Topic(TAG, device, kind)
    elif first == OWNTRACKS:
        levels = rest.split("/")
        if len(levels) == 2:
            return Topic(OWNTRACKS, rest, "")
        if len(levels) == 3 and levels[2] in _OWNTRACKS_KINDS:
            return Topic(OWNTRACKS, f"{levels[0]}/{levels[1]}", levels[2])
    elif first == OSMAND and "/" not in rest:
        return Topic(OSMAND, rest, "")
    return None
