"""Check-ins (定位签到) in `fencewatch replay`: a roster entry's optional `checkins` asks the
person's phone at each due time the recorded clock passes, and the live duty's rule
(supervision.checkin_rules) settles each — so the scored suite judges check-ins as the
service does."""

from __future__ import annotations

import json
from pathlib import Path

from fencewatch.timefmt import iso as _iso
from tests.kit import LIANDU, LIANDU_SEAT, T0, lishui_collection, offset
from tests.test_replay import replay

MIN = 60_000


def _phone(user: str, ms: int, acc: float = 12.0) -> dict:
    lat, lon = offset(LIANDU_SEAT, 40, 40)
    payload = {"_type": "location", "tst": ms // 1000, "lat": lat, "lon": lon, "acc": acc}
    return {"at": ms + 900, "topic": f"owntracks/{user}/phone", "payload": payload}


def _face(supervisee: str, due: int, at: int, verdict: str = "pass") -> dict:
    payload = {"supervisee": supervisee, "due": _iso(due), "verdict": verdict}
    return {"at": at, "topic": "checkin", "payload": payload}


def build(directory: Path) -> tuple[int, int]:
    """T0 is 18:40 in Shanghai: check-ins fall due at 19:00 and 20:00."""
    seven, eight = T0 + 20 * MIN, T0 + 80 * MIN

    def person(n: int, checkins: dict) -> dict:
        device = {"id": f"P{n}", "kind": "phone", "owntracks": f"s{n}/phone"}
        return {"id": f"S{n}", "jurisdiction": [LIANDU], "devices": [device], "checkins": checkins}

    with_face = {"times": ["19:00", "20:00"], "face": True}
    roster = {
        "timezone": "Asia/Shanghai",
        "supervisees": [
            person(1, with_face),  # answers 19:00; at 20:00 the phone reports, nobody passes
            person(2, {"times": ["19:00", "20:00"]}),  # the phone falls silent after 19:30
            person(3, with_face),  # answers both, one 8 minutes late, within the deadline
            person(4, with_face),  # fails the verification at 19:00
        ],
    }
    pings = [_phone(f"s{n}", T0 + k * 5 * MIN) for n in (1, 3, 4) for k in range(30)]
    pings += [_phone("s2", T0 + k * 5 * MIN) for k in range(11)]
    pings += [
        _face("S1", seven, seven + 2 * MIN),
        _face("S3", seven, seven + MIN),
        _face("S3", eight, eight + 8 * MIN),
        _face("S4", seven, seven + 3 * MIN, "fail"),
        _face("S4", seven, seven + 4 * MIN),  # too late: already settled
        _face("S9", seven, seven + 5 * MIN),  # nobody's check-in
    ]
    pings.sort(key=lambda p: p["at"])
    (directory / "zones.geojson").write_text(json.dumps(lishui_collection(), ensure_ascii=False))
    (directory / "roster.json").write_text(json.dumps(roster))
    (directory / "pings.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pings))
    return seven, eight


def test_replay_raises_each_missed_checkin_once_with_why(tmp_path: Path) -> None:
    seven, eight = build(tmp_path)
    result = replay(tmp_path)
    assert result.returncode == 0, result.stderr
    alerts = [json.loads(line) for line in result.stdout.splitlines()]
    missed = sorted(
        (a["supervisee"], a["detail"]["due_at"], a["detail"]["reason"], a["ts"])
        for a in alerts
        if a["type"] == "checkin_missed"
    )
    assert missed == [
        ("S1", _iso(eight), "no_face", _iso(eight + 15 * MIN)),
        ("S2", _iso(eight), "no_fix", _iso(eight + 15 * MIN)),
        ("S4", _iso(seven), "face_failed", _iso(seven + 3 * MIN)),
        ("S4", _iso(eight), "no_face", _iso(eight + 15 * MIN)),
    ]
    # (S2's silent phone is also lost contact an hour on.)
    assert {a["type"] for a in alerts if a["supervisee"] != "S2"} == {"checkin_missed"}
    # Verifications that answer nothing open are said, not fatal.
    assert result.stderr.count("rejected checkin") == 2, result.stderr


def test_a_broken_checkin_schedule_is_explained(tmp_path: Path) -> None:
    build(tmp_path)
    roster = json.loads((tmp_path / "roster.json").read_text())
    roster["supervisees"][0]["checkins"] = {"times": ["7 pm"]}
    (tmp_path / "roster.json").write_text(json.dumps(roster))
    result = replay(tmp_path)
    assert result.returncode == 2
    assert "supervisee S1: checkins: times must be HH:MM" in result.stderr
