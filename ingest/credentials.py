"""Devices' identity at the broker: per-device MQTT credentials and a topic ACL for
Mosquitto (written by `fencewatch devices provision`, fencewatch/provision.py).

Each device logs in to the broker with its device id as user name and a random password of
its own; the ACL lets it publish only its own uplink (`em/<id>/loc`, `em/<id>/evt`,
`em/<id>/cmd/ack`) and read only its own downlink (`em/<id>/cmd`), so a tag cannot report
positions as another tag or read another tag's commands. The service account (default
`fencewatch`) reads every uplink and publishes commands, through one login per connection:
the broker names each client after its user, so two connections sharing a login would
replace each other (`fencewatch.config.MqttAddress.login`): `<account>@<k>of<N>` logs in
the session of shard k of N (`@0of1` when there is one), `<account>@cmd` the command
sender, `<account>@jt808` the JT/T 808 gateway. All of an account's logins share its
password, and each may do only what its connection needs; the bare account has none. JT/T
808 terminals have no login: they speak to the gateway, which may publish the uplink of
those terminals' devices and of no other.

Two files are written for Mosquitto (`password_file` and `acl_file` in its config; a
SIGHUP makes a running broker reload both):
- the password file, in Mosquitto 2's own PBKDF2-SHA512 format (`$7$` lines, what
  `mosquitto_passwd` writes). It is written here rather than through `mosquitto_passwd`,
  whose `-b` puts the password on a command line any local user can read, and whose `-U`
  needs the clear passwords in a file first. The passwords are 192 random bits, so key
  stretching adds nothing against guessing and the broker's default 101 rounds are kept:
  more would only cost the broker CPU when a whole fleet reconnects at once.
- the ACL file, generated whole: `pattern` lines with `%u` for the tags, a `user` block for
  each of the service's logins and for each OwnTracks phone (whose topic names its
  OwnTracks user and device, not its device id).

A new device's password is printed (or written with `--out` to a file only its owner can
read) once, and stored nowhere in clear: the password file keeps only its hash and the
database none at all. Devices already in the password file keep their password unless
rotated (`--rotate ID`); devices no longer known are removed only with `--prune`.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from alerts import downlink
from fencewatch.config import login_name
from ingest import topics
from ingest.shards import Shard

ITERATIONS = 101  # Mosquitto's own default; see the module docstring
SALT_BYTES = 12
SERVICE_USER = "fencewatch"
MAX_SHARDS = 1024  # as FENCEWATCH_SHARDS allows
# The decoder's device ids (ingest.decode) less ':', which separates the user name from the
# hash in the password file. No '+', '#' or '/': a user name is substituted into topics.
DEVICE_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
# OwnTracks "<user>/<device>": topic levels, so no wildcards and no further '/'.
_OWNTRACKS_PART = re.compile(r"^[^/+#\x00\s]{1,64}$")

# What a tag may do with its own topics; `%u` is the user name, i.e. the device id.
DEVICE_PATTERNS = (
    ("write", topics.tag("%u", topics.LOC)),
    ("write", topics.tag("%u", topics.EVT)),
    ("write", topics.tag("%u", topics.CMD_ACK)),
    ("read", topics.tag("%u", topics.CMD)),
)
# What each of the service's connections may do, by connection name (the `connection` it
# gives MqttAddress.client); INGEST stands for every shard's session. A new kind of
# connection adds its entry here and so gets a login of its own — never one shared with
# another connection (the broker would let each throw the other off), and one per
# deployment, not per process, or the processes' connections would do the same.
INGEST = "ingest"
GATEWAY = "jt808"
SERVICE_CONNECTIONS: dict[str, tuple[tuple[str, str], ...]] = {
    # All uplink (ingest.topics.UPLINK: OsmAnd requests too, which the HTTP listener
    # publishes for the shard that judges the phone), and the broker's count of dropped
    # messages (ingest.broker_watch).
    INGEST: (
        *(("read", topic) for topic in topics.UPLINK),
        ("read", "$SYS/broker/publish/messages/dropped"),
    ),
    # Commands to tags, and to OwnTracks phones (alerts.downlink).
    downlink.CONNECTION: tuple(("write", topic) for topic in topics.COMMANDS),
    # The OsmAnd HTTP listener's publisher (ingest.osmand_http), as `connection="osmand"`.
    "osmand": (("write", topics.osmand(topics.ANY)),),
    # The JT/T 808 gateway (ingest.jt808.gateway), as `connection="jt808"`: it takes every
    # command and hands on those of its terminals; it publishes for its terminals only,
    # each on its own topics (GATEWAY_PATTERNS, added per device by `render_acl`).
    GATEWAY: (("read", topics.tag(topics.ANY, topics.CMD)),),
}
# What the gateway may publish for each JT/T 808 terminal's device.
GATEWAY_PATTERNS = tuple(
    ("write", topics.tag("%u", kind)) for kind in (topics.LOC, topics.EVT, topics.CMD_ACK)
)


class ProvisionError(ValueError):
    pass


@dataclass(frozen=True)
class DeviceEntry:
    id: str
    owntracks: str | None = None  # "<user>/<device>" of an OwnTracks phone
    # A JT/T 808 terminal's: no login of its own, the gateway publishes for it.
    jt808: bool = False


# --- Mosquitto's password hashes -----------------------------------------------------------


def hash_password(password: str, *, salt: bytes | None = None, iterations: int = ITERATIONS) -> str:
    """`$7$<iterations>$<base64 salt>$<base64 PBKDF2-SHA512>`, as Mosquitto 2 reads it."""
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, 64)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_password(password: str, encoded: str) -> bool:
    """Check a password against a `$7$` (PBKDF2-SHA512) or `$6$` (salted SHA-512) hash."""
    parts = encoded.split("$")
    try:
        if len(parts) == 5 and parts[1] == "7":
            iterations, salt, digest = int(parts[2]), parts[3], parts[4]
            got = hashlib.pbkdf2_hmac(
                "sha512", password.encode(), base64.b64decode(salt), iterations, 64
            )
        elif len(parts) == 4 and parts[1] == "6":
            salt, digest = parts[2], parts[3]
            got = hashlib.sha512(password.encode() + base64.b64decode(salt)).digest()
        else:
            return False
        return hmac.compare_digest(got, base64.b64decode(digest))
    except ValueError:  # bad base64 or iteration count: not a hash we can check
        return False


def new_password() -> str:
    return secrets.token_urlsafe(24)


def read_password_file(path: Path) -> dict[str, str]:
    """user → hash, in file order; {} when the file does not exist yet."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    entries: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, encoded = line.partition(":")
        if not sep or not user:
            raise ProvisionError(f"{path}:{number}: not a 'user:hash' line")
        entries[user] = encoded
    return entries


def render_password_file(entries: dict[str, str]) -> str:
    return "".join(f"{user}:{encoded}\n" for user, encoded in entries.items())


# --- the service's logins ------------------------------------------------------------------

Topics = tuple[tuple[str, str], ...]


def service_logins(account: str, shards: Iterable[int]) -> dict[str, Topics]:
    """Every login of one service account, with what it may do: a session per shard for
    each shard count in `shards`, and one login per other connection."""
    logins: dict[str, Topics] = {}
    ingest = SERVICE_CONNECTIONS[INGEST]
    for count in sorted(set(shards)):
        for index in range(count):
            logins[login_name(account, Shard(index, count).connection)] = ingest
    for connection, granted in SERVICE_CONNECTIONS.items():
        if connection != INGEST:
            logins[login_name(account, connection)] = granted
    return logins


# --- the ACL -------------------------------------------------------------------------------


def render_acl(devices: Sequence[DeviceEntry], logins: dict[str, Topics]) -> str:
    lines = [
        "# Generated by `fencewatch devices provision`; edits are overwritten.",
        "# A device logs in with its device id as user name (%u below): it may publish only",
        "# its own uplink and read only its own commands.",
    ]
    lines += [f"pattern {access} {topic}" for access, topic in DEVICE_PATTERNS]
    lines += ["", "# the fencewatch service: one login per connection, each with what it needs"]
    terminals = sorted(d.id for d in devices if d.jt808)
    for login, granted in logins.items():
        lines += ["", f"user {login}"]
        lines += [f"topic {access} {topic}" for access, topic in granted]
        if login.endswith(f"@{GATEWAY}"):
            lines += [
                f"topic {access} {topic.replace('%u', device)}"
                for device in terminals
                for access, topic in GATEWAY_PATTERNS
            ]
    phones = {d.id: d.owntracks for d in devices if d.owntracks}
    for device, user_device in sorted(phones.items()):
        lines += ["", f"# OwnTracks phone {device}", f"user {device}"]
        lines += [
            f"topic write {topics.owntracks(user_device, sub)}"
            for sub in ("", *topics.OWNTRACKS_SUBTOPICS)
        ]
        lines.append(f"topic read {topics.owntracks(user_device, topics.CMD)}")
    return "\n".join(lines) + "\n"


def mosquitto_auth_config(password_file: Path, acl_file: Path) -> str:
    """The lines that make Mosquitto use the two files and refuse anonymous clients.

    `use_username_as_clientid` makes every client's id its user name. Without it a device
    could connect with the service's client id (public: FENCEWATCH_MQTT_CLIENT_ID, default
    fencewatch-ingest): Mosquitto would close the service's connection and give the device
    the service's persistent session, with the fixes queued in it. So each of the service's
    connections has a login of its own (`service_logins`). It is an option of the listener
    it follows: these lines go after the `listener` line (before any, Mosquitto 2.0 opens
    a second listener on port 1883 for it)."""
    return (
        "allow_anonymous false\n"
        "use_username_as_clientid true\n"
        f"password_file {password_file.resolve()}\n"
        f"acl_file {acl_file.resolve()}\n"
    )


# --- provisioning --------------------------------------------------------------------------


def check_devices(
    devices: Iterable[DeviceEntry], service_users: Sequence[str]
) -> list[DeviceEntry]:
    """The devices sorted by id, after checking every id, and every service account's name,
    can be a Mosquitto user name."""
    found: dict[str, DeviceEntry] = {}
    problems = [
        f"service account {u[:80]!r} cannot be an MQTT user name (letters, digits, _ . -)"
        for u in service_users
        if not DEVICE_ID.match(u)
    ]
    for d in devices:
        if not DEVICE_ID.match(d.id):
            problems.append(
                f"device id {d.id[:80]!r} cannot be an MQTT user name (letters, digits, _ . -)"
            )
        elif d.id in service_users:
            problems.append(f"device id {d.id!r} is the service account's user name")
        elif d.owntracks is not None and not (
            len(parts := d.owntracks.split("/")) == 2
            and all(_OWNTRACKS_PART.match(p) for p in parts)
        ):
            problems.append(
                f"device {d.id}: OwnTracks topic {d.owntracks[:80]!r} is not user/device"
            )
        else:
            found[d.id] = d
    if problems:
        raise ProvisionError("; ".join(problems))
    return [found[k] for k in sorted(found)]


@dataclass
class Provisioned:
    passwords: dict[str, str] = field(default_factory=dict)  # new or rotated: user → password
    kept: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)  # in the file, unknown, kept (no --prune)
    logins: list[str] = field(default_factory=list)  # the service accounts' logins


def provision(
    devices: Iterable[DeviceEntry],
    password_file: Path,
    acl_file: Path,
    *,
    service_users: Sequence[str] = (SERVICE_USER,),
    service_password: str | None = None,
    shards: Iterable[int] = (1,),
    rotate: Iterable[str] = (),
    prune: bool = False,
) -> Provisioned:
    """Give every device without credentials (and each rotated one) a new password, and
    write both files. Each service account has a login per connection for each shard
    count in `shards` (`service_logins`), all with one password: `service_password` when
    given (a hash is rewritten only if it does not match), else a new one for an account
    that has none or is rotated."""
    if not service_users:
        raise ProvisionError("at least one service account is needed")
    shards = list(shards)
    if not shards or not all(1 <= n <= MAX_SHARDS for n in shards):
        raise ProvisionError(f"shard counts must be 1 to {MAX_SHARDS}, got {shards}")
    checked = check_devices(devices, service_users)
    known = {d.id for d in checked}
    rotate = set(rotate)
    if unknown := rotate - known - set(service_users):
        raise ProvisionError(f"cannot rotate unknown devices: {', '.join(sorted(unknown))}")
    entries = read_password_file(password_file)
    out = Provisioned()
    result: dict[str, str] = {}
    logins: dict[str, Topics] = {}
    for account in service_users:
        mine = service_logins(account, shards)
        logins.update(mine)
        result.update(_service_hashes(account, mine, entries, service_password, rotate, out))
    out.logins = list(logins)
    for d in checked:
        if d.jt808:
            continue  # no login: the gateway publishes for it
        current = entries.get(d.id)
        if current is None or d.id in rotate:
            password = new_password()
            out.passwords[d.id] = password
            current = hash_password(password)
        else:
            out.kept.append(d.id)
        result[d.id] = current
    for user, encoded in entries.items():
        if user in result:
            continue
        if prune:
            out.removed.append(user)
        else:
            out.stale.append(user)
            result[user] = encoded
    # The ACL before the passwords: a device able to log in always finds its rules there
    # (one without rules would merely be refused everything).
    write_private(acl_file, render_acl(checked, logins))
    write_private(password_file, render_password_file(result))
    return out


def _service_hashes(
    account: str,
    logins: dict[str, Topics],
    entries: dict[str, str],
    password: str | None,
    rotate: set[str],
    out: Provisioned,
) -> dict[str, str]:
    """The password file's entries for one account's logins."""
    current = {login: entries.get(login) for login in logins}
    if password is None and (account in rotate or not any(current.values())):
        password = out.passwords[account] = new_password()
    elif password is None and not all(current.values()):
        # Only hashes are kept: a login added to an account (more shards, a new kind of
        # connection) cannot be given the password the others have without being told it.
        missing = ", ".join(login for login, h in current.items() if not h)
        raise ProvisionError(
            f"service account {account} exists without logins {missing}: give its password"
            f" in FENCEWATCH_MQTT_URL, or --rotate {account} for a new one"
        )
    hashes = {}
    for login, encoded in current.items():
        if password is not None and (encoded is None or not verify_password(password, encoded)):
            encoded = hash_password(password)
        assert encoded is not None
        hashes[login] = encoded
    return hashes


def write_private(path: Path, text: str, mode: int = 0o640) -> None:
    """Replace `path` atomically, readable by owner and group only, keeping the owner and
    group of the file it replaces (Mosquitto may run as its own user)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        old = path.stat()
    except FileNotFoundError:
        old = None
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            os.fchmod(f.fileno(), mode)
            if old is not None and os.geteuid() == 0:
                os.fchown(f.fileno(), old.st_uid, old.st_gid)
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_credentials(path: Path, passwords: dict[str, str]) -> None:
    """The new passwords as `user,password` lines, in a new file only its owner can read."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write("user,password\n")
        f.writelines(f"{user},{password}\n" for user, password in passwords.items())


# --- where the devices come from -----------------------------------------------------------


async def devices_from_db(pool: asyncpg.Pool) -> list[DeviceEntry]:
    rows = await pool.fetch(
        "SELECT id, owntracks, jt808 IS NOT NULL AS jt808 FROM devices ORDER BY id"
    )
    return [DeviceEntry(r["id"], r["owntracks"], r["jt808"]) for r in rows]


def devices_from_roster(path: Path) -> list[DeviceEntry]:
    """The devices of a spec 4.2 roster.json: ids, or objects with `id` and `owntracks`."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        out = []
        for person in doc["supervisees"]:
            for d in person.get("devices", []):
                if isinstance(d, str):
                    out.append(DeviceEntry(d))
                else:
                    jt808 = d.get("jt808") is not None
                    out.append(DeviceEntry(str(d["id"]), d.get("owntracks"), jt808))
        return out
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ProvisionError(f"cannot read devices from {path}: {exc}") from exc


def devices_from_files(
    password_file: Path, acl_file: Path, service_users: Sequence[str]
) -> list[DeviceEntry]:
    """The devices the two files already provide for: every user of the password file but
    the service's logins, with the OwnTracks topics of the phones' ACL blocks, so the
    files can be written again without the database."""
    owntracks: dict[str, str] = {}
    terminals: set[str] = set()
    user = None
    with contextlib.suppress(FileNotFoundError):
        for line in acl_file.read_text(encoding="utf-8").splitlines():
            kind, _, rest = line.partition(" ")
            if kind == "user":
                user = rest
            elif kind == "topic" and user and rest.startswith("write "):
                named = topics.parse(rest.removeprefix("write "))
                if named and named.protocol == topics.OWNTRACKS and not named.kind:
                    owntracks[user] = named.device  # the phone's own "<user>/<device>"
                elif named and user.endswith(f"@{GATEWAY}") and named.kind == topics.LOC:
                    terminals.add(named.device)
    return [
        DeviceEntry(user, owntracks.get(user))
        for user in read_password_file(password_file)
        if user not in service_users and "@" not in user and user not in terminals
    ] + [DeviceEntry(device, jt808=True) for device in sorted(terminals)]
