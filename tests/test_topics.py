"""The MQTT topic format (ingest/topics.py): every topic the builders make parses back to
what it was built from, and nothing else passes for a device topic."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest import topics
from ingest.topics import Topic

# One topic level: no '/', as a device id or an OwnTracks user or device name is.
level = st.text(st.characters(blacklist_characters="/"), min_size=1, max_size=20)


@given(device=level, kind=st.sampled_from([topics.LOC, topics.EVT, topics.CMD, topics.CMD_ACK]))
def test_a_tags_topics_parse_back(device: str, kind: str) -> None:
    assert topics.parse(topics.tag(device, kind)) == Topic(topics.TAG, device, kind)


@given(user=level, device=level, kind=st.sampled_from(["", *topics.OWNTRACKS_SUBTOPICS, "cmd"]))
def test_a_phones_topics_parse_back(user: str, device: str, kind: str) -> None:
    named = topics.parse(topics.owntracks(f"{user}/{device}", kind))
    assert named == Topic(topics.OWNTRACKS, f"{user}/{device}", kind)


@given(device=level)
def test_an_osmand_request_topic_parses_back(device: str) -> None:
    assert topics.parse(topics.osmand(device)) == Topic(topics.OSMAND, device, "")


@pytest.mark.parametrize(
    ("topic", "named"),
    [
        ("osmand", Topic(topics.OSMAND, "", "")),  # as pings.jsonl records a request
        ("em//loc", Topic(topics.TAG, "", "loc")),  # the decoder says the id is not valid
        ("em/T1", None),
        ("em/T1/loc/x", None),
        ("em/T1/ack", None),
        ("em/T1/cmd/nack", None),
        ("owntracks/alice", None),
        ("owntracks/alice/phone/waypoint", None),
        ("owntracks/alice/phone/event/x", None),
        ("osmand/P1/x", None),
        ("$SYS/broker/publish/messages/dropped", None),
        ("", None),
    ],
)
def test_other_topics(topic: str, named: Topic | None) -> None:
    assert topics.parse(topic) == named


def test_only_a_tags_acknowledgement_names_an_acknowledging_tag() -> None:
    assert topics.acknowledging("em/T1/cmd/ack") == "T1"
    for topic in ("em/T1/cmd", "em/T1/loc", "owntracks/a/b/cmd/ack", "em/a/b/cmd/ack"):
        assert topics.acknowledging(topic) is None


def test_every_uplink_wildcard_is_read_and_every_command_wildcard_written() -> None:
    # The ACLs (ingest.credentials) and the subscriptions (ingest.shards) share these.
    assert [topics.parse(t) for t in topics.COMMANDS] == [
        Topic(topics.TAG, "+", topics.CMD),
        Topic(topics.OWNTRACKS, "+/+", topics.CMD),
    ]
    assert all(topics.parse(t) is not None for t in topics.UPLINK)
    assert not set(topics.UPLINK) & set(topics.COMMANDS)
