"""The `fencewatch` command: its subcommands, their help and their exit codes."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

DESCRIPTION = "GPS electronic monitoring and geofences for community corrections."
EVIDENCE_ACTOR = "fencewatch evidence export"  # the audit log's actor, with the login user
SCENARIO = (
    "SCENARIO_DIR is a folder holding zones.geojson (the zones: jurisdictions, exclusion"
    " zones, curfew homes, as a GeoJSON FeatureCollection), roster.json (the supervisees,"
    " their devices, the zones that apply and their leave)"
)


class _Command(argparse.ArgumentParser):
    """A subcommand's parser: a flag it does not know is refused with its own usage, not
    the top-level one (argparse hands a subcommand's leftovers up to the top parser)."""

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: Any = None
    ) -> tuple[argparse.Namespace, list[str]]:
        parsed, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed, extras


def _serve(args: argparse.Namespace) -> int:
    from fencewatch.service import run

    return run(demo_fleet=args.fleet)


def _demo(args: argparse.Namespace) -> int:
    from fencewatch.service import run

    return run(demo_fleet=args.tags)


def _jt808(args: argparse.Namespace) -> int:
    from fencewatch.jt808 import main

    return main()


def _load(args: argparse.Namespace) -> int:
    from fencewatch.loader import main

    return main(Path(args.scenario))


def _replay(args: argparse.Namespace) -> int:
    from fencewatch.replay import main

    return main(Path(args.scenario))


def _token(args: argparse.Namespace) -> int:
    """Print a new token on stdout (and nothing else there, so scripts can capture it)."""
    from api.tokens import TokenError, create_token
    from fencewatch.servers import run_with_pool

    try:
        token = run_with_pool(
            lambda pool: create_token(pool, args.role, args.office, args.subject, args.days)
        )
    except TokenError as exc:
        print(f"fencewatch token: {exc}", file=sys.stderr)
        return 2
    print(token)
    return 0


def _token_revoke(args: argparse.Namespace) -> int:
    """Revoke a token at once (its next request gets 401) and tell the running service's
    live feeds (best effort); `-` reads it from stdin, which keeps it out of the shell
    history and the process list. Exit 1 if no live token has it."""
    from api.auth import REVOKED_CHANNEL, hash_token
    from api.tokens import revoke_token
    from fencewatch.config import Settings
    from fencewatch.loader import tell_service
    from fencewatch.servers import run_with_pool

    token = sys.stdin.readline() if args.token == "-" else args.token
    token = token.strip()
    if not token:
        print("fencewatch token revoke: no token given", file=sys.stderr)
        return 2
    if not run_with_pool(lambda pool: revoke_token(pool, token)):
        print("fencewatch token revoke: no such live token", file=sys.stderr)
        return 1
    tell_service(
        Settings.from_env(),
        REVOKED_CHANNEL,
        hash_token(token).encode(),
        "of the revoke; its open live feeds drop the token at their next check",
    )
    print("revoked")
    return 0


def _devices_provision(args: argparse.Namespace) -> int:
    from fencewatch.provision import main

    return main(
        args.password_file,
        args.acl_file,
        roster=args.roster,
        out=args.out,
        rotate=args.rotate,
        prune=args.prune,
        service_users=args.service_user,
        shards=args.shards,
    )


def _retention_purge(args: argparse.Namespace) -> int:
    """Run the purge now; print what it did as JSON."""
    from datetime import UTC, datetime

    import asyncpg
    import msgspec
    from redis.asyncio import Redis

    from duties.retention import purge
    from fencewatch.config import MIN_RETENTION_DAYS, ConfigError, Settings
    from fencewatch.servers import run_with_pool
    from storage.archive import Archive

    try:
        settings = Settings.from_env()
        days = settings.retention_days if args.days is None else args.days
        if days < MIN_RETENTION_DAYS:
            raise ConfigError(f"--days must be at least {MIN_RETENTION_DAYS}")
    except ConfigError as exc:
        print(f"fencewatch retention: {exc}", file=sys.stderr)
        return 2
    dry_run, archive = args.dry_run, Archive.of(settings)

    async def work(pool: asyncpg.Pool) -> dict[str, Any]:
        # The service's Redis, where protected persons purged were seen too: only a
        # configured one is reachable from here.
        redis = Redis.from_url(settings.redis_url) if settings.redis_url else None
        try:
            now = datetime.now(UTC)
            return await purge(pool, now, days, archive=archive, dry_run=dry_run, redis=redis)
        finally:
            if redis is not None:
                await redis.aclose()

    result = run_with_pool(work)
    print(msgspec.json.encode(result).decode())
    return 1 if "skipped" in result else 0


def _archive_run(args: argparse.Namespace) -> int:
    """Move the days past the archive's age now, then pack the closed hours left in
    PostgreSQL; print what moved and what was packed as JSON."""
    import asyncio
    import functools
    from datetime import UTC, datetime, timedelta

    import msgspec
    from redis.asyncio import Redis

    from fencewatch.config import ConfigError, Settings
    from fencewatch.servers import ServerUrls, servers
    from ingest.leases import ingest_lag
    from storage import archiving, compaction
    from storage.archive import Archive, ArchiveError
    from storage.db import open_pool

    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"fencewatch archive: {exc}", file=sys.stderr)
        return 2
    days = settings.archive_after_days if args.after_days is None else args.after_days
    if days < 1:
        print("fencewatch archive: --after-days must be at least 1", file=sys.stderr)
        return 2
    archive = Archive.of(settings)

    async def upkeep(urls: ServerUrls) -> dict[str, Any]:
        now = datetime.now(UTC)
        pool = await open_pool(urls.database_url, min_size=1, max_size=2)
        redis = Redis.from_url(urls.redis_url)
        try:
            # Giving way to the deployment's ingest while it runs behind, as the service does.
            lag = functools.partial(ingest_lag, redis, settings.client_id)
            moved = await archiving.run(pool, archive, now, days, lag=lag)
            after = timedelta(hours=settings.pack_after_hours)
            return {**moved, "packed": await compaction.run(pool, now, after, lag=lag)}
        finally:
            await redis.aclose()
            await pool.close()

    try:
        with servers(settings, need=("postgres", "redis")) as urls:
            result = asyncio.run(upkeep(urls))
    except ArchiveError as exc:
        print(f"fencewatch archive: {exc}", file=sys.stderr)
        return 1
    print(msgspec.json.encode(result).decode())
    return 1 if "skipped" in result else 0


def _evidence_export(args: argparse.Namespace) -> int:
    """Export a bundle to a file, audited as this command run by the login user."""
    import getpass
    from datetime import datetime

    from evidence import gather
    from evidence.export import Exporter, export
    from evidence.keys import KeyProblem
    from fencewatch.config import Settings
    from fencewatch.servers import run_with_pool
    from storage.archive import Archive

    settings = Settings.from_env()
    who = Exporter(f"{EVIDENCE_ACTOR} ({getpass.getuser()})", None, None)

    async def work(pool: Any) -> Any:
        async with pool.acquire() as conn:
            if args.alert is not None:
                scope = await gather.alert_scope(conn, None, args.alert)
            else:
                start, end = (datetime.fromisoformat(v) for v in (args.start, args.end))
                if start.tzinfo is None or end.tzinfo is None:
                    raise gather.Refused("--from and --to need a UTC offset, e.g. +08:00")
                scope = gather.person_scope(args.supervisee, start, end)
            return await export(
                conn,
                who,
                scope,
                settings.evidence_key_path,
                settings.timezone,
                Archive.of(settings),
            )

    if args.alert is None and not (args.start and args.end):
        print("fencewatch evidence export: --supervisee needs --from and --to", file=sys.stderr)
        return 2
    try:
        bundle = run_with_pool(work)
    except ValueError as exc:  # a bad time
        print(f"fencewatch evidence export: {exc}", file=sys.stderr)
        return 2
    except (gather.NotFound, gather.Refused, KeyProblem) as exc:
        print(f"fencewatch evidence export: {exc}", file=sys.stderr)
        return 1 if isinstance(exc, gather.NotFound) else 2
    out = args.out or Path(bundle.filename)
    out.write_bytes(bundle.data)
    print(out)
    return 0


def _evidence_key(args: argparse.Namespace) -> int:
    """Publish the deployment's key: what GET /api/v1/evidence/key answers, or its PEM."""
    import json

    from evidence.keys import KeyProblem, published, service_key
    from fencewatch.config import Settings

    try:
        key = published(service_key(Settings.from_env().evidence_key_path).public_key())
    except KeyProblem as exc:
        print(f"fencewatch evidence key: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(key["public_key"] if args.pem else json.dumps(key, indent=2) + "\n")
    return 0


def _evidence_verify(args: argparse.Namespace) -> int:
    """A plain answer: OK with what the bundle covers, or each problem naming the file;
    exit 0 only for an untouched bundle (and the pinned key, if given)."""
    from evidence.bundle import verify
    from evidence.keys import KeyProblem, pinned_fingerprint

    try:
        pinned = pinned_fingerprint(args.key) if args.key else None
        data = Path(args.bundle).read_bytes()
    except KeyProblem as exc:
        print(f"fencewatch evidence verify: --key: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(
            f"fencewatch evidence verify: cannot read {args.bundle}: {exc.strerror}",
            file=sys.stderr,
        )
        return 2
    verdict = verify(data, pinned)
    if not verdict.ok:
        print(f"FAILED: {args.bundle} is not as exported:")
        for problem in verdict.problems:
            print(f"  {problem}")
        return 1
    manifest = verdict.manifest or {}
    scope = manifest.get("scope", {})
    by = manifest.get("exported_by", {})
    print(f"OK: {verdict.checked} files match the manifest, signed by {verdict.fingerprint}")
    print(
        f"  scope: {scope.get('kind')} {scope.get('alert') or scope.get('supervisee')},"
        f" {scope.get('from')} to {scope.get('to')}"
    )
    print(f"  exported by {by.get('subject')} at {manifest.get('exported_at')}")
    if pinned is None:
        print(
            "  the key was not pinned: compare the fingerprint with the deployment's"
            " (GET /api/v1/evidence/key, fencewatch evidence key), or pass --key"
        )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fencewatch", description=DESCRIPTION)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Command)

    serve = commands.add_parser(
        "serve", help="run the whole service: MQTT ingest, engine, scheduler, API and console"
    )
    serve.add_argument(
        "--fleet",
        type=int,
        default=0,
        metavar="N",
        help="also run N simulated tags around 丽水市 (demo data is loaded first)",
    )
    serve.set_defaults(func=_serve)

    demo = commands.add_parser(
        "demo", help="serve with the 丽水 demo data and a simulated fleet (embedded servers)"
    )
    demo.add_argument("--tags", type=int, default=36, help="simulated tags (default 36)")
    demo.set_defaults(func=_demo)

    jt808 = commands.add_parser(
        "jt808",
        help="run the JT/T 808 gateway alone (terminals over TCP on FENCEWATCH_JT808)",
        description="Run only the JT/T 808 gateway: terminals connect over TCP on"
        " FENCEWATCH_JT808 (default 127.0.0.1:6808) and their fixes go to the MQTT broker"
        " for the service's shards. `fencewatch serve` runs it too.",
    )
    jt808.set_defaults(func=_jt808)

    load = commands.add_parser(
        "load",
        help="import zones.geojson and roster.json (upsert by id)",
        description="Import a scenario's zones and roster into the database (upsert by id,"
        f" in one transaction) and tell a running service to reload. {SCENARIO}.",
    )
    load.add_argument("scenario", metavar="SCENARIO_DIR")
    load.set_defaults(func=_load)

    replay = commands.add_parser(
        "replay",
        help="run recorded pings through the engine offline; one JSON alert a line",
        description="Run recorded pings through the geofence engine with no servers: one"
        " JSON alert a line on stdout, rejected messages and warnings on stderr."
        f" {SCENARIO} and pings.jsonl (the MQTT messages as received, one JSON object a"
        ' line: {"at": epoch ms, "topic": ..., "payload": the message}).',
    )
    replay.add_argument("scenario", metavar="SCENARIO_DIR")
    replay.set_defaults(func=_replay)

    token = commands.add_parser("token", help="API bearer tokens")
    token_commands = token.add_subparsers(dest="token_command", required=True)
    create = token_commands.add_parser("create", help="print a new bearer token")
    create.add_argument(
        "--role", required=True, choices=["operator", "officer", "supervisor", "auditor"]
    )
    create.add_argument("--office", default=None, help="scope the token to this office id")
    create.add_argument("--subject", default=None, help="who the token is for (audit log)")
    create.add_argument("--days", type=int, default=365, help="valid for this many days")
    create.set_defaults(func=_token)
    revoke = token_commands.add_parser("revoke", help="revoke a token at once")
    revoke.add_argument("token", metavar="TOKEN", help="the token, or - to read it from stdin")
    revoke.set_defaults(func=_token_revoke)

    devices = commands.add_parser("devices", help="device identity on the MQTT broker")
    device_commands = devices.add_subparsers(dest="devices_command", required=True)
    provision = device_commands.add_parser(
        "provision",
        help="per-device MQTT passwords and a topic ACL for Mosquitto (new passwords shown once);"
        " without files, for the embedded broker",
    )
    provision.add_argument(
        "--password-file",
        type=Path,
        default=None,
        help="the Mosquitto password_file to write (default: the embedded broker's, reloaded)",
    )
    provision.add_argument(
        "--acl-file", type=Path, default=None, help="the Mosquitto acl_file to write"
    )
    provision.add_argument(
        "--roster", type=Path, default=None, help="devices from this roster.json, not the database"
    )
    provision.add_argument(
        "--out", type=Path, default=None, help="new passwords to this new file (600), not stdout"
    )
    provision.add_argument(
        "--rotate", action="append", default=[], metavar="ID", help="new password for this device"
    )
    provision.add_argument(
        "--prune", action="store_true", help="remove users that are no longer devices"
    )
    provision.add_argument(
        "--service-user",
        action="append",
        default=[],
        metavar="NAME",
        help="service account (repeatable); default FENCEWATCH_MQTT_URL's user, else fencewatch",
    )
    provision.add_argument(
        "--shards",
        type=int,
        action="append",
        default=[],
        metavar="N",
        help="logins for N shards' sessions (repeatable, e.g. while changing N);"
        " default FENCEWATCH_SHARDS, else 1",
    )
    provision.set_defaults(func=_devices_provision)

    retention = commands.add_parser("retention", help="location data retention")
    retention_commands = retention.add_subparsers(dest="retention_command", required=True)
    purge = retention_commands.add_parser(
        "purge", help="delete location data past retention now; prints what it did as JSON"
    )
    purge.add_argument(
        "--days", type=int, default=None, help="default FENCEWATCH_RETENTION_DAYS, else 1826"
    )
    purge.add_argument(
        "--dry-run", action="store_true", help="count what would be deleted; delete nothing"
    )
    purge.set_defaults(func=_retention_purge)

    evidence = commands.add_parser("evidence", help="signed evidence bundles (证据包)")
    evidence_commands = evidence.add_subparsers(dest="evidence_command", required=True)
    export = evidence_commands.add_parser(
        "export",
        help="write one alert's, or one person's over a time range, evidence bundle (a zip)",
        description="Write an evidence bundle: report.pdf (map, alerts and dispositions,"
        " rules in force, fixes), track.csv/.geojson, zones.geojson, timeline.csv/.json,"
        " rules.json and manifest.json signed with the service's key (FENCEWATCH_EVIDENCE_KEY,"
        " default evidence-key.pem in FENCEWATCH_DATA_DIR). The export is audited.",
    )
    which = export.add_mutually_exclusive_group(required=True)
    which.add_argument("--alert", type=int, default=None, metavar="ID", help="one alert")
    which.add_argument("--supervisee", default=None, metavar="ID", help="one person...")
    export.add_argument(
        "--from", dest="start", default=None, metavar="TIME", help="...from (ISO-8601 with offset)"
    )
    export.add_argument(
        "--to", dest="end", default=None, metavar="TIME", help="...to (at most 31 days later)"
    )
    export.add_argument(
        "-o", "--out", type=Path, default=None, help="the zip to write (default: its own name)"
    )
    export.set_defaults(func=_evidence_export)
    check = evidence_commands.add_parser(
        "verify",
        help="check a bundle was not changed: exit 0 if untouched, 1 naming what changed",
        description="Check an evidence bundle: the manifest's Ed25519 signature, that it is"
        " the pinned key (--key), and every file's SHA-256 and size. Prints OK and exits 0"
        " for an untouched bundle; names each file changed, added or missing and exits 1;"
        " exits 2 when the bundle or the key cannot be read.",
    )
    check.add_argument("bundle", metavar="BUNDLE", help="the bundle's zip file")
    check.add_argument(
        "--key",
        default=None,
        metavar="PUBKEY",
        help="the key it must be signed with: a PEM file, the saved GET /api/v1/evidence/key"
        " answer, or a fingerprint (sha256:…)",
    )
    check.set_defaults(func=_evidence_verify)
    key = evidence_commands.add_parser(
        "key",
        help="print the public key this deployment signs bundles with, to publish or pin",
        description="Print the deployment's evidence key (FENCEWATCH_EVIDENCE_KEY, made on"
        " first use) as GET /api/v1/evidence/key gives it: algorithm, fingerprint and PEM"
        " public key, as JSON. Hand it to whoever verifies bundles (verify --key takes it).",
    )
    key.add_argument("--pem", action="store_true", help="print only the PEM public key")
    key.set_defaults(func=_evidence_key)

    archive = commands.add_parser("archive", help="the archive tier of fixes (Parquet)")
    archive_commands = archive.add_subparsers(dest="archive_command", required=True)
    run = archive_commands.add_parser(
        "run",
        help="move the days of fixes past the archive's age from PostgreSQL to the archive,"
        " verified; prints what moved as JSON",
    )
    run.add_argument(
        "--after-days",
        type=int,
        default=None,
        help="default FENCEWATCH_ARCHIVE_AFTER_DAYS, else 7",
    )
    run.set_defaults(func=_archive_run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
