"""The embedded broker's accounts (spec 4.3: started when FENCEWATCH_MQTT_URL is unset).

It is locked as docs/security.md tells a user to lock their own Mosquitto: no anonymous
clients, each client named after its user, a password file and an ACL written by
`fencewatch devices provision`. Both live in the broker's data directory, with the
password of the service account in `service.secret` (mode 600, created once): the
fencewatch processes sharing the data directory read it to log in, nothing else holds it.

At start the service's logins are made sure of (more shards need more of them); devices
keep what they have. `fencewatch devices provision` without files gives the devices in the
database theirs and reloads the running broker; the demo gives its simulated tags new
passwords on every start, in memory only.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from fencewatch import embedded
from ingest import credentials
from ingest.credentials import SERVICE_USER, DeviceEntry

PASSWORD_FILE = "passwd"
ACL_FILE = "acl"
SECRET_FILE = "service.secret"


def files(datadir: Path) -> tuple[Path, Path]:
    """The broker's password file and ACL."""
    return datadir / PASSWORD_FILE, datadir / ACL_FILE


def service_password(datadir: Path) -> str:
    """The service account's password, made on first use."""
    return embedded.stored_secret(datadir / SECRET_FILE)


def service_url(datadir: Path, port: int) -> str:
    return f"mqtt://{SERVICE_USER}:{service_password(datadir)}@127.0.0.1:{port}"


def ensure(datadir: Path, shards: int) -> bool:
    """Make sure every login the service needs with `shards` shards is in the files;
    returns whether they were written (a running broker must then reload them)."""
    passwd, acl = files(datadir)
    password = service_password(datadir)
    entries = credentials.read_password_file(passwd)
    logins = credentials.service_logins(SERVICE_USER, [shards])
    if acl.exists() and all(
        login in entries and credentials.verify_password(password, entries[login])
        for login in logins
    ):
        return False
    credentials.provision(
        credentials.devices_from_files(passwd, acl, [SERVICE_USER]),
        passwd,
        acl,
        service_password=password,
        shards=[shards],
    )
    return True


def provision_fleet(datadir: Path, devices: Iterable[DeviceEntry], shards: int) -> dict[str, str]:
    """New passwords for simulated devices (the demo's), added to the files; device id →
    password. The other devices keep theirs."""
    passwd, acl = files(datadir)
    fleet = {d.id: d for d in devices}
    known = credentials.devices_from_files(passwd, acl, [SERVICE_USER])
    done = credentials.provision(
        [*(d for d in known if d.id not in fleet), *fleet.values()],
        passwd,
        acl,
        service_password=service_password(datadir),
        shards=[shards],
        rotate=fleet,
    )
    return {d: done.passwords[d] for d, entry in fleet.items() if not entry.jt808}
