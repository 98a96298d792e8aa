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

import msgspec

TAG = "em"
OWNTRACKS = "owntracks"
OSMAND = "osmand"
ANY = "+"  # MQTT's single-level wildcard, standing for any one device

LOC, EVT, CMD = "loc", "evt", "cmd"
CMD_ACK = f"{CMD}/ack"
_ACK_SUFFIX = f"/{CMD_ACK}"
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


# A Struct, not a NamedTuple: every message's topic is parsed, and this is made faster.
class Topic(msgspec.Struct, frozen=True, gc=False):
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
    levels = topic.split("/")
    first, count = levels[0], len(levels)
    if first == TAG:
        if count == 3 and levels[2] in (LOC, EVT, CMD):
            return Topic(TAG, levels[1], levels[2])
        if count == 4 and f"{levels[2]}/{levels[3]}" == CMD_ACK:
            return Topic(TAG, levels[1], CMD_ACK)
    elif first == OWNTRACKS:
        if count == 3:
            return Topic(OWNTRACKS, f"{levels[1]}/{levels[2]}", "")
        if count == 4 and levels[3] in _OWNTRACKS_KINDS:
            return Topic(OWNTRACKS, f"{levels[1]}/{levels[2]}", levels[3])
    elif first == OSMAND and count <= 2:
        return Topic(OSMAND, levels[1] if count == 2 else "", "")
    return None


def acknowledging(topic: str) -> str | None:
    """The tag whose acknowledgement of a command `topic` carries, or None: a quick test,
    for the ingest loop asks it of every message."""
    if not topic.endswith(_ACK_SUFFIX):
        return None
    named = parse(topic)
    return named.device if named is not None and named.kind == CMD_ACK else None
