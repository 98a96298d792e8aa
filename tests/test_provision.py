"""Device identity (`fencewatch devices provision`): the password file and ACL it writes,
and, on a private real Mosquitto that uses them, that a device cannot publish as another,
cannot read another's commands, cannot take over another's session, and that a wrong
password is refused; the real service ingests through its own account."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.reasoncodes import ReasonCode

from fencewatch.embedded import free_port, mosquitto_binary, mosquitto_config, wait_for_port
from fencewatch.provision import main as provision_command
from ingest import credentials as provision
from ingest.credentials import (
    DeviceEntry,
    ProvisionError,
    hash_password,
    read_password_file,
    verify_password,
)
from tests.kit import LIANDU, LIANDU_SEAT, lishui_collection
from tests.live import eventually, running

WAIT_S = 10.0  # an upper bound for a broker round trip, not a speed requirement
SERVICE_PASSWORD = "service-secret-for-tests"
DEVICES = [DeviceEntry("A"), DeviceEntry("B"), DeviceEntry("P", owntracks="alice/phone")]
TERMINAL = DeviceEntry("J", jt808=True)  # a JT/T 808 terminal's device: the gateway's
INGEST_LOGIN, COMMAND_LOGIN = "fencewatch@0of1", "fencewatch@cmd"  # MqttAddress.login
GATEWAY_LOGIN = "fencewatch@jt808"

needs_mosquitto = pytest.mark.skipif(mosquitto_binary() is None, reason="no mosquitto binary")


# --- the files -----------------------------------------------------------------------------


def test_hashes_are_mosquittos_pbkdf2_format() -> None:
    encoded = hash_password("s3cret", salt=b"0123456789ab")
    kind, iterations, salt, digest = encoded.split("$")[1:]
    assert (kind, iterations, salt) == ("7", "101", "MDEyMzQ1Njc4OWFi")
    assert len(digest) == 88  # 64 bytes, base64
    assert verify_password("s3cret", encoded)
    assert not verify_password("s3cret!", encoded)
    assert not verify_password("s3cret", "$7$101$!!!$???")
    assert hash_password("x") != hash_password("x")  # salted


@pytest.mark.skipif(shutil.which("mosquitto_passwd") is None, reason="no mosquitto_passwd")
def test_hashes_agree_with_mosquitto_passwd(tmp_path: Path) -> None:
    path = tmp_path / "passwd"
    # -b puts the password in the process list: fine for a test, why provision avoids it.
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(path), "dev1", "pw-1"], check=True)
    theirs = read_password_file(path)["dev1"]
    assert theirs.startswith("$7$")
    assert verify_password("pw-1", theirs) and not verify_password("pw-2", theirs)


def _files(tmp_path: Path) -> tuple[Path, Path]:
    return tmp_path / "mosquitto" / "passwd", tmp_path / "mosquitto" / "acl"


def test_new_devices_get_passwords_once_and_keep_them(tmp_path: Path) -> None:
    passwd, acl = _files(tmp_path)
    first = provision.provision(DEVICES, passwd, acl, service_password=SERVICE_PASSWORD)
    assert sorted(first.passwords) == ["A", "B", "P"]  # the service's was given
    assert len(set(first.passwords.values())) == 3
    entries = read_password_file(passwd)
    logins = list(provision.service_logins("fencewatch", [1]))
    assert logins[:2] == [INGEST_LOGIN, COMMAND_LOGIN]
    assert list(entries) == [*logins, "A", "B", "P"]
    for user, password in first.passwords.items():
        assert verify_password(password, entries[user])
        assert password not in passwd.read_text()
    assert all(verify_password(SERVICE_PASSWORD, entries[login]) for login in logins)
    for path in (passwd, acl):
        assert stat.S_IMODE(path.stat().st_mode) == 0o640

    again = provision.provision(
        [*DEVICES, DeviceEntry("C")], passwd, acl, service_password=SERVICE_PASSWORD
    )
    assert list(again.passwords) == ["C"] and again.kept == ["A", "B", "P"]
    after = read_password_file(passwd)
    assert {u: after[u] for u in entries} == entries  # nothing else rewritten

    rotated = provision.provision(
        DEVICES, passwd, acl, service_password=SERVICE_PASSWORD, rotate=["B"]
    )
    assert list(rotated.passwords) == ["B"] and rotated.stale == ["C"]
    latest = read_password_file(passwd)
    assert latest["A"] == entries["A"] and latest["B"] != entries["B"]
    assert "C" in latest  # unknown now, but kept without --prune

    pruned = provision.provision(
        DEVICES, passwd, acl, service_password=SERVICE_PASSWORD, prune=True
    )
    assert pruned.removed == ["C"] and "C" not in read_password_file(passwd)


def test_a_service_account_without_a_given_password_gets_one(tmp_path: Path) -> None:
    passwd, acl = _files(tmp_path)
    done = provision.provision(DEVICES, passwd, acl, service_users=["fw-1", "fw-2"])
    assert {"fw-1", "fw-2"} <= set(done.passwords)
    entries = read_password_file(passwd)
    assert "fw-1" not in entries  # the bare account is no login: each connection has one
    for login in ("fw-1@0of1", "fw-1@cmd"):
        assert verify_password(done.passwords["fw-1"], entries[login])
    text = acl.read_text()
    assert "user fw-1@0of1\n" in text and "user fw-2@cmd\n" in text


def test_each_connection_has_a_login_with_only_what_it_needs(tmp_path: Path) -> None:
    passwd, acl = _files(tmp_path)
    done = provision.provision(DEVICES, passwd, acl, service_password=SERVICE_PASSWORD, shards=[4])
    assert done.logins[:5] == [f"fencewatch@{k}of4" for k in range(4)] + [COMMAND_LOGIN]
    blocks = {
        block.split("\n")[0].removeprefix("user "): block.split("\n")[1:]
        for block in acl.read_text().split("\n\n")
        if block.startswith("user fencewatch@")
    }
    assert "topic read em/+/loc" in blocks["fencewatch@2of4"]
    assert not any("write em/+/cmd" in line for line in blocks["fencewatch@2of4"])
    assert blocks[COMMAND_LOGIN] == ["topic write em/+/cmd", "topic write owntracks/+/+/cmd"]

    # More shards later: new logins need the account's password, kept only as hashes.
    with pytest.raises(ProvisionError, match="FENCEWATCH_MQTT_URL"):
        provision.provision(DEVICES, passwd, acl, shards=[4, 8])
    again = provision.provision(
        DEVICES, passwd, acl, service_password=SERVICE_PASSWORD, shards=[4, 8]
    )
    assert "fencewatch@7of8" in again.logins and again.passwords == {}
    assert verify_password(SERVICE_PASSWORD, read_password_file(passwd)["fencewatch@7of8"])
    # ... or a new password for all of them.
    rotated = provision.provision(DEVICES, passwd, acl, rotate=["fencewatch"], shards=[8])
    new = rotated.passwords["fencewatch"]
    entries = read_password_file(passwd)
    assert all(verify_password(new, entries[f"fencewatch@{k}of8"]) for k in range(8))
    assert rotated.stale == [f"fencewatch@{k}of4" for k in range(4)]  # until --prune


def test_the_files_alone_say_which_devices_they_hold(tmp_path: Path) -> None:
    passwd, acl = _files(tmp_path)
    provision.provision(DEVICES, passwd, acl, service_password=SERVICE_PASSWORD)
    assert provision.devices_from_files(passwd, acl, ["fencewatch"]) == DEVICES


def test_the_acl(tmp_path: Path) -> None:
    passwd, acl = _files(tmp_path)
    provision.provision(DEVICES, passwd, acl, service_password=SERVICE_PASSWORD)
    lines = [x for x in acl.read_text().splitlines() if x and not x.startswith("#")]
    assert lines[:4] == [
        "pattern write em/%u/loc",
        "pattern write em/%u/evt",
        "pattern write em/%u/cmd/ack",
        "pattern read em/%u/cmd",
    ]
    service = lines[lines.index(f"user {INGEST_LOGIN}") + 1 : lines.index("user P")]
    assert "topic read em/+/loc" in service and "topic write em/+/cmd" in service
    assert not any(x.startswith("topic write em/+/loc") for x in service)
    assert lines[lines.index("user P") + 1 :] == [
        "topic write owntracks/alice/phone",
        "topic write owntracks/alice/phone/event",
        "topic write owntracks/alice/phone/status",
        "topic read owntracks/alice/phone/cmd",
    ]


def test_a_jt808_terminal_has_no_login_and_the_gateway_publishes_only_for_it(
    tmp_path: Path,
) -> None:
    passwd, acl = _files(tmp_path)
    done = provision.provision([*DEVICES, TERMINAL], passwd, acl, service_password=SERVICE_PASSWORD)
    assert "J" not in done.passwords and "J" not in read_password_file(passwd)
    lines = acl.read_text().splitlines()
    gateway = lines[lines.index(f"user {GATEWAY_LOGIN}") + 1 :]
    gateway = gateway[: gateway.index("")]
    assert gateway == [
        "topic read em/+/cmd",
        "topic write em/J/loc",
        "topic write em/J/evt",
        "topic write em/J/cmd/ack",
    ]
    assert provision.devices_from_files(passwd, acl, ["fencewatch"]) == [*DEVICES, TERMINAL]


@pytest.mark.parametrize(
    "device",
    [
        DeviceEntry("A:B"),  # the password file's separator
        DeviceEntry("A+"),
        DeviceEntry("#"),
        DeviceEntry("a/b"),
        DeviceEntry(""),
        DeviceEntry("D" * 65),
        DeviceEntry("fencewatch"),  # the service account
        DeviceEntry("P", owntracks="alice/phone/x"),
        DeviceEntry("P", owntracks="alice/+"),
    ],
)
def test_ids_that_cannot_be_mqtt_users_are_refused(tmp_path: Path, device: DeviceEntry) -> None:
    passwd, acl = _files(tmp_path)
    with pytest.raises(ProvisionError):
        provision.provision([device], passwd, acl)
    assert not passwd.exists() and not acl.exists()


def test_rotating_an_unknown_device_is_refused(tmp_path: Path) -> None:
    passwd, acl = _files(tmp_path)
    with pytest.raises(ProvisionError, match="unknown"):
        provision.provision(DEVICES, passwd, acl, rotate=["NOPE"])


def _roster(tmp_path: Path) -> Path:
    path = tmp_path / "roster.json"
    roster = {
        "timezone": "Asia/Shanghai",
        "supervisees": [
            {"id": "S1", "jurisdiction": [LIANDU], "devices": ["A"]},
            {
                "id": "S2",
                "jurisdiction": [LIANDU],
                "devices": ["B", {"id": "P", "kind": "phone", "owntracks": "alice/phone"}],
            },
        ],
    }
    path.write_text(json.dumps(roster))
    return path


def test_the_command_prints_new_passwords_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FENCEWATCH_MQTT_URL", f"mqtt://fencewatch:{SERVICE_PASSWORD}@host:1883")
    passwd, acl = _files(tmp_path)
    assert provision_command(passwd, acl, roster=_roster(tmp_path)) == 0
    out = capsys.readouterr()
    printed = dict(line.split("\t") for line in out.out.splitlines())
    assert sorted(printed) == ["A", "B", "P"]  # the service's password is in its URL
    entries = read_password_file(passwd)
    assert all(verify_password(pw, entries[user]) for user, pw in printed.items())
    assert verify_password(SERVICE_PASSWORD, entries[INGEST_LOGIN])
    assert "shown only this once" in out.err

    assert provision_command(passwd, acl, roster=_roster(tmp_path)) == 0
    assert capsys.readouterr().out == ""  # nothing new, nothing shown


def test_the_command_can_write_passwords_to_a_private_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    passwd, acl = _files(tmp_path)
    creds = tmp_path / "new-devices.csv"
    assert provision_command(passwd, acl, roster=_roster(tmp_path), out=creds) == 0
    assert capsys.readouterr().out == ""
    assert stat.S_IMODE(creds.stat().st_mode) == 0o600
    rows = creds.read_text().splitlines()
    assert rows[0] == "user,password" and len(rows) == 1 + 4  # A, B, P and fencewatch
    # Never overwritten: the passwords in it could not be shown again.
    assert provision_command(passwd, acl, roster=_roster(tmp_path), out=creds) == 2
    assert "exists" in capsys.readouterr().err


def test_the_command_reports_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    passwd, acl = _files(tmp_path)
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    assert provision_command(passwd, acl, roster=bad) == 2
    assert "cannot read devices" in capsys.readouterr().err


async def test_the_command_reads_devices_from_the_database(
    pg_dsn: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import asyncio

    from fencewatch.loader import load_scenario
    from storage.db import open_pool
    from tests.live import write_scenario

    pool = await open_pool(pg_dsn, min_size=1, max_size=2)
    try:
        scenario = tmp_path / "scenario"
        scenario.mkdir()
        roster = json.loads(_roster(tmp_path).read_text())
        roster["supervisees"].append(
            {
                "id": "S3",
                "jurisdiction": [LIANDU],
                "devices": [{"id": "J", "jt808": "013912345678"}],
            }
        )
        await load_scenario(pool, write_scenario(scenario, lishui_collection(), roster))
        monkeypatch.setenv("FENCEWATCH_DATABASE_URL", pg_dsn)
        monkeypatch.delenv("FENCEWATCH_MQTT_URL", raising=False)
        passwd, acl = _files(tmp_path)
        # In a thread: the command runs its own event loop, as it does from the shell.
        assert await asyncio.to_thread(provision_command, passwd, acl) == 0
        told = capsys.readouterr()
        printed = dict(line.split("\t") for line in told.out.splitlines())
        assert sorted(printed) == ["A", "B", "P", "fencewatch"]  # the terminal has no login
        assert "user P\ntopic write owntracks/alice/phone\n" in acl.read_text()
        assert "topic write em/J/loc\n" in acl.read_text()  # the gateway's, for it
        # The terminal may now register, for a week (ingest.jt808.terminals).
        assert "J (13912345678)" in told.err
        open_until = await pool.fetchval("SELECT jt808_enrol_until FROM devices WHERE id = 'J'")
        assert open_until is not None
        rows = await pool.fetch(
            "SELECT actor, object, supervisee_id, detail::text AS detail FROM audit_log"
            " WHERE action = 'device.provision' ORDER BY object"
        )
        assert [(r["object"], r["supervisee_id"]) for r in rows] == [
            ("device:A", "S1"),
            ("device:B", "S2"),
            ("device:P", "S2"),
        ]
        enrolled = await pool.fetch("SELECT object FROM audit_log WHERE action = 'device.enrol'")
        assert [r["object"] for r in enrolled] == ["device:J"]

        # Registered, its enrolment is closed; --rotate forgets its code and opens it again.
        await pool.execute(
            "UPDATE devices SET jt808_auth = 'x', jt808_enrol_until = NULL WHERE id = 'J'"
        )
        assert await asyncio.to_thread(provision_command, passwd, acl) == 0
        assert "terminal(s) may register" not in capsys.readouterr().err
        assert await asyncio.to_thread(provision_command, passwd, acl, rotate=["J"]) == 0
        assert "J (13912345678)" in capsys.readouterr().err
        row = await pool.fetchrow(
            "SELECT jt808_auth, jt808_enrol_until FROM devices WHERE id = 'J'"
        )
        assert row["jt808_auth"] is None and row["jt808_enrol_until"] is not None
        # The passwords are nowhere in the database.
        dump = " ".join(r["detail"] for r in rows)
        assert not any(pw in dump for pw in printed.values())
    finally:
        await pool.close()


# --- on the real broker --------------------------------------------------------------------


@dataclass
class Broker:
    port: int
    proc: subprocess.Popen
    passwords: dict[str, str]
    passwd: Path
    acl: Path

    def url(self, user: str = "fencewatch", password: str = SERVICE_PASSWORD) -> str:
        """The service's URL: the account, whose connections log in as its logins."""
        return f"mqtt://{user}:{password}@127.0.0.1:{self.port}"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A private Mosquitto with fencewatch's shipped config plus the provisioned files."""
    binary = mosquitto_binary()
    if binary is None:
        pytest.skip("no mosquitto binary")
    datadir = tmp_path / "broker"
    passwd, acl = datadir / "passwd", datadir / "acl"
    done = provision.provision([*DEVICES, TERMINAL], passwd, acl, service_password=SERVICE_PASSWORD)
    port = free_port()
    conf = mosquitto_config(datadir, port, provision.mosquitto_auth_config(passwd, acl))
    with open(datadir / "mosquitto.out", "ab") as log:
        proc = subprocess.Popen([binary, "-c", str(conf)], stdout=log, stderr=log)
    try:
        wait_for_port(port, proc=proc)
        yield Broker(port, proc, done.passwords, passwd, acl)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


class Client:
    """An MQTT 5 client that waits for each acknowledgement and keeps what it receives."""

    def __init__(
        self, port: int, user: str | None, password: str | None, client_id: str | None = None
    ) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.connects: list[ReasonCode] = []
        self.disconnects = 0
        self._connected = threading.Event()
        self._arrived = threading.Condition()
        self._acks: dict[int, tuple[threading.Event, list[Any]]] = {}
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id or f"{user}-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv5,
        )
        if user is not None:
            self.client.username_pw_set(user, password)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_ack
        self.client.on_publish = self._on_publish
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self._connected.wait(WAIT_S), "no CONNACK"

    @property
    def accepted(self) -> bool:
        return not self.connects[0].is_failure

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        self.connects.append(rc)
        self._connected.set()

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        self.disconnects += 1

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._arrived:
            self.messages.append((msg.topic, bytes(msg.payload)))
            self._arrived.notify_all()

    def _expect(self, mid: int) -> tuple[threading.Event, list[Any]]:
        return self._acks.setdefault(mid, (threading.Event(), []))

    def _on_ack(self, client: Any, userdata: Any, mid: int, codes: Any, props: Any) -> None:
        done, got = self._expect(mid)
        got.extend(codes if isinstance(codes, list) else [codes])
        done.set()

    def _on_publish(self, client: Any, userdata: Any, mid: int, rc: Any, props: Any) -> None:
        self._on_ack(client, userdata, mid, rc, props)

    def _wait(self, mid: int) -> list[Any]:
        done, got = self._expect(mid)
        assert done.wait(WAIT_S), "no acknowledgement"
        return got

    def subscribe(self, *topics: str) -> list[ReasonCode]:
        _, mid = self.client.subscribe([(t, 1) for t in topics])
        assert mid is not None
        return self._wait(mid)

    def publish(self, topic: str, payload: bytes) -> ReasonCode:
        info = self.client.publish(topic, payload, qos=1)
        return self._wait(info.mid)[0]

    def wait_for(self, topic: str) -> list[tuple[str, bytes]]:
        """Everything received up to and including the first message on `topic`."""
        with self._arrived:
            assert self._arrived.wait_for(
                lambda: any(t == topic for t, _ in self.messages), WAIT_S
            ), f"nothing arrived on {topic}; got {self.messages}"
            return list(self.messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def clients(broker: Broker) -> Iterator[dict[str, Client]]:
    made: dict[str, Client] = {}
    try:
        made["service"] = Client(broker.port, INGEST_LOGIN, SERVICE_PASSWORD)
        made["commands"] = Client(broker.port, COMMAND_LOGIN, SERVICE_PASSWORD)
        for user in ("A", "B", "P"):
            made[user] = Client(broker.port, user, broker.passwords[user])
        yield made
    finally:
        for c in made.values():
            c.close()


@needs_mosquitto
def test_a_device_cannot_publish_as_another(clients: dict[str, Client]) -> None:
    service, a, b = clients["service"], clients["A"], clients["B"]
    # What ingest subscribes to (ingest.topics.UPLINK), plus everything else under em/.
    assert not any(c.is_failure for c in service.subscribe("em/+/loc", "em/+/evt", "em/#"))
    assert not any(c.is_failure for c in b.subscribe("em/B/cmd"))

    assert a.publish("em/B/loc", b"forged position").is_failure  # refused: not authorised
    assert a.publish("em/B/evt", b"forged strap_cut").is_failure
    assert a.publish("em/B/cmd", b"forged command").is_failure
    assert a.publish("owntracks/alice/phone", b"forged phone").is_failure
    assert not a.publish("em/A/evt", b"own event").is_failure
    assert not a.publish("em/A/loc", b"own position").is_failure

    # One publisher's messages arrive in order: once A's own position is in, anything
    # forged before it would have been too.
    got = service.wait_for("em/A/loc")
    assert {t for t, _ in got} == {"em/A/evt", "em/A/loc"}  # and nothing on em/B/...
    assert service.publish("em/B/cmd", b"forged by ingest").is_failure  # not its job
    assert clients["commands"].publish("em/B/cmd", b"real command").value == 0
    assert b.wait_for("em/B/cmd") == [("em/B/cmd", b"real command")]


@needs_mosquitto
def test_the_jt808_gateway_speaks_only_for_its_terminals(clients: dict[str, Client]) -> None:
    service, commands = clients["service"], clients["commands"]
    gateway = Client(clients["A"].client._port, GATEWAY_LOGIN, SERVICE_PASSWORD)
    try:
        service.subscribe("em/#")
        gateway.subscribe("em/+/cmd")
        assert gateway.publish("em/A/loc", b"forged for a tag").is_failure
        assert gateway.publish("em/J/cmd", b"a command is not its to give").is_failure
        assert not gateway.publish("em/J/evt", b"J's event").is_failure
        assert not gateway.publish("em/J/loc", b"J's position").is_failure
        assert {t for t, _ in service.wait_for("em/J/loc")} == {"em/J/evt", "em/J/loc"}
        commands.publish("em/J/cmd", b"for J")
        assert ("em/J/cmd", b"for J") in gateway.wait_for("em/J/cmd")
    finally:
        gateway.close()


@needs_mosquitto
def test_a_device_cannot_read_another_devices_commands(clients: dict[str, Client]) -> None:
    commands, a, b = clients["commands"], clients["A"], clients["B"]
    a.subscribe("em/B/cmd", "em/+/cmd", "em/#", "#")  # as greedy as it likes
    b.subscribe("em/B/cmd")
    a.subscribe("em/A/cmd")
    commands.publish("em/B/cmd", b"for B")
    b.publish("em/B/loc", b"B's position")
    commands.publish("em/A/cmd", b"for A")
    # Messages reach A in the order they were published: the last one arriving means
    # the earlier ones either arrived before it or never will.
    assert set(a.wait_for("em/A/cmd")) == {("em/A/cmd", b"for A")}  # nothing of B's
    assert b.wait_for("em/B/cmd") == [("em/B/cmd", b"for B")]


@needs_mosquitto
def test_a_phone_publishes_only_its_own_owntracks_topic(clients: dict[str, Client]) -> None:
    service, phone = clients["service"], clients["P"]
    service.subscribe("owntracks/+/+")
    assert phone.publish("owntracks/bob/phone", b"someone else").is_failure
    assert not phone.publish("owntracks/alice/phone", b"mine").is_failure
    assert service.wait_for("owntracks/alice/phone") == [("owntracks/alice/phone", b"mine")]


@needs_mosquitto
def test_wrong_or_missing_credentials_are_refused(broker: Broker) -> None:
    tries = [
        ("A", "not the password"),
        ("A", broker.passwords["B"]),  # another device's password
        ("NOBODY", "anything"),
        ("fencewatch", "guess"),
        ("fencewatch", SERVICE_PASSWORD),  # the bare account: no connection logs in so
        (None, None),  # anonymous
    ]
    for user, password in tries:
        c = Client(broker.port, user, password)
        try:
            assert not c.accepted, (user, c.connects)
            assert c.connects[0].getName() in ("Not authorized", "Bad user name or password")
        finally:
            c.close()


@needs_mosquitto
def test_a_device_cannot_take_over_the_services_session(broker: Broker) -> None:
    service = Client(broker.port, INGEST_LOGIN, SERVICE_PASSWORD, client_id="fencewatch-ingest")
    try:
        service.subscribe("em/+/loc")
        # A device connecting with the service's client id: without
        # use_username_as_clientid, Mosquitto would close the service's connection and
        # hand the device its session (and the fixes queued in it).
        intruder = Client(broker.port, "A", broker.passwords["A"], client_id="fencewatch-ingest")
        try:
            assert intruder.accepted
            assert not intruder.publish("em/A/loc", b"after the attempt").is_failure
            assert service.wait_for("em/A/loc") == [("em/A/loc", b"after the attempt")]
            assert service.disconnects == 0 and len(service.connects) == 1
        finally:
            intruder.close()
    finally:
        service.close()


@needs_mosquitto
def test_a_rotated_password_takes_effect_on_reload(broker: Broker) -> None:
    old = broker.passwords["A"]
    done = provision.provision(
        DEVICES, broker.passwd, broker.acl, service_password=SERVICE_PASSWORD, rotate=["A"]
    )
    new = done.passwords["A"]
    broker.proc.send_signal(signal.SIGHUP)  # what `systemctl reload mosquitto` sends

    def logs_in(password: str, user: str = "A") -> bool:
        c = Client(broker.port, user, password)
        c.close()
        return c.accepted

    deadline = time.monotonic() + 30  # a bound on the reload, not a requirement
    while logs_in(old) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not logs_in(old)
    assert logs_in(new)
    assert logs_in(broker.passwords["B"], "B")  # the others keep theirs


@needs_mosquitto
async def test_the_service_ingests_through_its_account_and_forgeries_stay_out(
    broker: Broker, pg_dsn: str, redis_url: str
) -> None:
    roster = {
        "timezone": "Asia/Shanghai",
        "supervisees": [
            {"id": "S1", "jurisdiction": [LIANDU], "devices": ["A"]},
            {"id": "S2", "jurisdiction": [LIANDU], "devices": ["B"]},
        ],
    }
    async with running(pg_dsn, redis_url, broker.url(), lishui_collection(), roster) as live:
        a = Client(broker.port, "A", broker.passwords["A"])
        try:
            now = int(time.time() * 1000)
            fix = {"v": 1, "seq": 1, "ts": now, "lat": LIANDU_SEAT[0], "lon": LIANDU_SEAT[1]}
            a.publish("em/B/loc", json.dumps(fix).encode())  # refused by the broker
            a.publish("em/A/loc", json.dumps(fix).encode())

            async def stored() -> list[Any]:
                return list(await live.service.pool.fetch("SELECT device_id FROM fixes"))

            rows = await eventually(stored, "A's fix was not stored")
            assert [r["device_id"] for r in rows] == ["A"]
            assert not await live.service.pool.fetchval("SELECT count(*) FROM rejected_messages")
        finally:
            a.close()


def test_provision_files_are_replaced_atomically_keeping_their_owner(tmp_path: Path) -> None:
    passwd, acl = _files(tmp_path)
    provision.provision(DEVICES, passwd, acl)
    before = passwd.stat()
    provision.provision([*DEVICES, DeviceEntry("Z")], passwd, acl)
    after = passwd.stat()
    assert (after.st_uid, after.st_gid) == (before.st_uid, before.st_gid)
    assert after.st_ino != before.st_ino  # a new file moved into place, never half-written
    assert not [p for p in passwd.parent.iterdir() if p.name.startswith(".")]
    assert os.access(passwd, os.R_OK)
