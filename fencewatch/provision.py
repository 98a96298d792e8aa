"""`fencewatch devices provision`: the command that gives devices their broker credentials
(ingest/credentials.py) — from a roster or the database, into a broker's files of your own
or the embedded broker's, which it then reloads — and audits each one given."""

from __future__ import annotations

import asyncio
import functools
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import asyncpg

from fencewatch import embedded_mqtt
from fencewatch.config import ConfigError, MqttAddress, Settings
from fencewatch.servers import reload_mqtt, servers
from ingest.credentials import (
    SERVICE_USER,
    Provisioned,
    ProvisionError,
    devices_from_db,
    devices_from_roster,
    provision,
    write_credentials,
)
from ingest.jt808 import terminals
from storage.db import open_pool
from storage.repo import access as access_repo

ACTOR = "fencewatch devices provision"  # the audit log's actor


async def _audit(pool: asyncpg.Pool, result: Provisioned, service_users: Sequence[str]) -> None:
    """One audit row per device given credentials (never the password), in one transaction."""
    async with pool.acquire() as conn, conn.transaction():
        for user in result.passwords:
            if user in service_users:
                continue
            await access_repo.audit(conn, ACTOR, None, "device.provision", f"device:{user}", {})
        for user in result.removed:
            await access_repo.audit(conn, ACTOR, None, "device.deprovision", f"device:{user}", {})


def main(
    password_file: Path | None,
    acl_file: Path | None,
    *,
    roster: Path | None = None,
    out: Path | None = None,
    rotate: Sequence[str] = (),
    prune: bool = False,
    service_users: Sequence[str] = (),
    shards: Sequence[int] = (),
) -> int:
    """The command. Devices come from `roster` when given, else from the database. Without
    files, it provisions the embedded broker (FENCEWATCH_DATA_DIR/mqtt) and reloads it."""

    def fail(problem: str) -> int:
        print(f"fencewatch devices provision: {problem}", file=sys.stderr)
        return 2

    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        return fail(str(exc))
    embedded = None
    if password_file is None and acl_file is None:
        if settings.mqtt_url:
            return fail(
                "FENCEWATCH_MQTT_URL names a broker of your own: give its --password-file"
                " and --acl-file"
            )
        embedded = settings.data_dir / "mqtt"
        password_file, acl_file = embedded_mqtt.files(embedded)
        users = [SERVICE_USER]
        password: str | None = embedded_mqtt.service_password(embedded)
    elif password_file is None or acl_file is None:
        return fail("give both --password-file and --acl-file, or neither (the embedded broker)")
    else:
        address = MqttAddress.parse(settings.mqtt_url) if settings.mqtt_url else None
        env_user = address.username if address else None
        users = list(service_users) or [env_user or SERVICE_USER]
        # The service's own password is kept in FENCEWATCH_MQTT_URL; use it when it names
        # one of the accounts being written.
        password = address.password if address and env_user in users and len(users) == 1 else None
    if out is not None and out.exists():
        return fail(f"{out} exists; not overwriting")
    write = functools.partial(
        provision,
        password_file=password_file,
        acl_file=acl_file,
        service_users=users,
        service_password=password,
        shards=list(shards) or [settings.shards],
        prune=prune,
    )
    enrolled: list[tuple[str, str]] = []
    try:
        if roster is not None:
            result = write(devices_from_roster(roster), rotate=rotate)
        else:
            result, enrolled = _provision_from_db(settings, write, users, rotate)
    except ProvisionError as exc:
        return fail(str(exc))
    _report(result, password_file, acl_file, out)
    if enrolled:
        named = ", ".join(f"{device} ({number})" for device, number in enrolled[:20])
        print(
            f"{len(enrolled)} JT/T 808 terminal(s) may register within"
            f" {terminals.ENROL_FOR.days} days, each given its authentication code then:"
            f" {named}{' …' if len(enrolled) > 20 else ''}",
            file=sys.stderr,
        )
    if embedded is not None and reload_mqtt(embedded):
        print("the embedded broker has reloaded them", file=sys.stderr)
    return 0


def _provision_from_db(
    settings: Settings,
    write: Callable[..., Provisioned],
    users: list[str],
    rotate: Sequence[str],
) -> tuple[Provisioned, list[tuple[str, str]]]:
    """Broker passwords for the devices that log in to it; for JT/T 808 terminals, which
    speak to the gateway instead, the gateway's topics for them and an open enrolment
    (ingest.jt808.terminals)."""

    async def run(dsn: str) -> tuple[Provisioned, list[tuple[str, str]]]:
        pool = await open_pool(dsn, min_size=1, max_size=2)
        try:
            devices = await devices_from_db(pool)
            result = write(devices, rotate=rotate)
            jt808 = {d.id for d in devices if d.jt808}
            async with pool.acquire() as conn, conn.transaction():
                enrolled = await terminals.open_enrolment(conn, [d for d in rotate if d in jt808])
                for device, _ in enrolled:
                    await access_repo.audit(
                        conn, ACTOR, None, "device.enrol", f"device:{device}", {}
                    )
            await _audit(pool, result, users)
            return result, enrolled
        finally:
            await pool.close()

    with servers(settings, need=("postgres",)) as urls:
        return asyncio.run(run(urls.database_url))


def _report(result: Provisioned, password_file: Path, acl_file: Path, out: Path | None) -> None:
    err = sys.stderr
    if result.passwords and out is not None:
        write_credentials(out, result.passwords)
        print(f"{len(result.passwords)} new passwords written to {out} (mode 600)", file=err)
    elif result.passwords:
        # stdout carries the secrets and nothing else, so a script can capture them.
        for user, password in result.passwords.items():
            print(f"{user}\t{password}")
    print(
        f"{len(result.passwords)} new, {len(result.kept)} kept, {len(result.removed)} removed;"
        f" wrote {password_file} and {acl_file}. The passwords are shown only this once.",
        file=err,
    )
    more = " …" if len(result.logins) > 12 else ""
    print(
        f"service logins, one per connection, each with its account's password:"
        f" {', '.join(result.logins[:12])}{more}",
        file=err,
    )
    if result.stale:
        print(
            f"{len(result.stale)} user(s) in the password file are no longer provisioned"
            f" (devices, or the service's logins for other shard counts):"
            f" {', '.join(result.stale[:20])}; --prune removes them",
            file=err,
        )
    print(
        "Mosquitto needs: allow_anonymous false, use_username_as_clientid true, password_file"
        " and acl_file (docs/security.md); SIGHUP (systemctl reload mosquitto) loads changes.",
        file=err,
    )
