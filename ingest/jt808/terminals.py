"""The JT/T 808 terminals fencewatch knows: a roster device's `jt808` number, and the
authentication code (鉴权码) each one is given when it registers.

A terminal names itself by its phone number (终端手机号): 12 BCD digits in the 2011/2013
header, 20 in the 2019 one, padded with leading zeros. Numbers are kept without those
zeros, so a roster's "13912345678" is the terminal whatever edition it speaks.

Registration (0x0100) is the protocol's weak point: it carries nothing secret, and its
answer (0x8100) carries the code the terminal authenticates with (0x0102) from then on.
So a terminal may register only while its enrolment is open — `fencewatch devices
provision` opens it for terminals that have no code, and `--rotate ID` for one that lost
or leaked it — and the code it is given then is stored only as a hash ($7$, as the
broker's password file keeps device passwords). A terminal that registers again after
that is refused ("terminal already registered") until its enrolment is opened again.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from datetime import timedelta

import msgspec

from ingest.credentials import hash_password, verify_password
from storage.db import Conn

# What a roster or the API accepts as a terminal's number: the digits of its BCD phone
# number (2019: 20 digits), leading zeros or not.
ID_PATTERN = r"^[0-9]{1,20}$"
_ID = re.compile(ID_PATTERN)
ENROL_FOR = timedelta(days=7)
CODE_BYTES = 12  # 96 random bits, 16 characters: terminals keep codes of up to 255 bytes


def number(phone: str) -> str:
    """A terminal's phone number as the roster keeps it (no leading zeros)."""
    if not _ID.match(phone):
        raise ValueError(f"a JT/T 808 terminal number is 1–20 digits, got {phone[:40]!r}")
    return phone.lstrip("0") or "0"


class Terminal(msgspec.Struct, frozen=True):
    device: str
    crs: str


async def enrol(conn: Conn, device_number: str) -> tuple[Terminal, str] | None:
    """Register the terminal with this number: a new code for it, if its enrolment is open
    (which this closes). None: unknown, or not open for registration."""
    code = secrets.token_urlsafe(CODE_BYTES)
    row = await conn.fetchrow(
        "UPDATE devices SET jt808_auth = $2, jt808_enrol_until = NULL"
        " WHERE jt808 = $1 AND jt808_enrol_until > now() RETURNING id, crs",
        device_number,
        hash_password(code),
    )
    return None if row is None else (Terminal(row["id"], row["crs"]), code)


async def known(conn: Conn, device_number: str) -> bool:
    return bool(await conn.fetchval("SELECT 1 FROM devices WHERE jt808 = $1", device_number))


async def authenticate(conn: Conn, device_number: str, code: str) -> Terminal | None:
    """The terminal, if `code` is the one it was given."""
    row = await conn.fetchrow(
        "SELECT id, crs, jt808_auth FROM devices WHERE jt808 = $1", device_number
    )
    if row is None or row["jt808_auth"] is None or not verify_password(code, row["jt808_auth"]):
        return None
    return Terminal(row["id"], row["crs"])


async def open_enrolment(
    conn: Conn, rotate: Sequence[str] = (), days: timedelta = ENROL_FOR
) -> list[tuple[str, str]]:
    """Let terminals without a code, and the devices in `rotate` (their codes forgotten),
    register within `days`; returns (device, number) of each one now open."""
    rows = await conn.fetch(
        "UPDATE devices SET jt808_enrol_until = now() + $2::interval,"
        " jt808_auth = CASE WHEN id = ANY($1::text[]) THEN NULL ELSE jt808_auth END"
        " WHERE jt808 IS NOT NULL AND (jt808_auth IS NULL OR id = ANY($1::text[]))"
        " RETURNING id, jt808",
        list(rotate),
        days,
    )
    return sorted((r["id"], r["jt808"]) for r in rows)
