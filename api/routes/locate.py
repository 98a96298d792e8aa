"""Locate now (立即定位): ask every device of a person for a fix at once, and read the
answers as they arrive (alerts.locate). Answers are positions, so reading them is audited
like reading a track."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field

from alerts import locate, record
from api import audit
from api.auth import AlertWorker, User
from api.context import Ctx
from api.errors import ApiError, not_found
from api.fields import UtcTime
from api.routes.supervisees import require_supervisee
from storage.db import Conn, Row

router = APIRouter(tags=["supervisees"])

RequestId = Annotated[int, Path(ge=1, le=2**63 - 1)]
RECENT = 20

_NO_DOWNLINK = (
    "a phone on HTTP (OsmAnd, Traccar Client) has no downlink and cannot be asked; its next"
    " report is taken as its answer（该手机无下行通道，无法下发立即定位，以其下一次上报为准）"
)


class LocateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    alert: int | None = Field(
        None, ge=1, le=2**63 - 1, description="asked from this alert: kept in its timeline"
    )


class Answer(BaseModel):
    ts: UtcTime = Field(description="device time of the fix")
    lat: float
    lon: float
    acc: float | None = Field(description="accuracy radius, metres")
    answered_at: UtcTime = Field(description="when the service committed it")


class LocateDevice(BaseModel):
    device: str
    kind: Literal["tag", "phone"]
    asked: bool = Field(description="a command went to the device")
    via: Literal["downlink", "owntracks"] | None = Field(
        description="downlink: the tag's `locate` command; owntracks: `reportLocation`"
    )
    note: str | None = None
    command: str | None = Field(description="the command's id (GET /alerts/{id}/commands)")
    command_status: Literal["queued", "delivered_to_broker", "acknowledged_by_device"] | None
    answer: Answer | None = Field(description="the device's next fix; null until it comes")


class LocateRequest(BaseModel):
    id: int
    supervisee: str
    alert: int | None
    requested_by: str
    requested_at: UtcTime
    answer_until: UtcTime = Field(description="a fix after this is no longer an answer")
    devices: list[LocateDevice]


class LocateRequestList(BaseModel):
    items: list[LocateRequest]


_REQUESTS = (
    "SELECT id, supervisee_id, alert_id, requested_by, requested_at FROM locate_requests"
    " WHERE supervisee_id = $1"
)
_DEVICES = (
    "SELECT l.request_id, l.device_id, d.kind, d.owntracks, l.command::text AS command,"
    " l.answered_at, l.fix_ts, l.lat, l.lon, l.acc,"
    " CASE WHEN c.device_acked_at IS NOT NULL THEN 'acknowledged_by_device'"
    "  WHEN c.broker_acked_at IS NOT NULL THEN 'delivered_to_broker'"
    "  WHEN c.id IS NOT NULL THEN 'queued' END AS command_status"
    " FROM locate_devices l JOIN devices d ON d.id = l.device_id"
    " LEFT JOIN device_commands c ON c.id = l.command"
    " WHERE l.request_id = ANY($1::bigint[]) ORDER BY l.device_id"
)


def _device(r: Row) -> LocateDevice:
    via = locate.channel(r)
    return LocateDevice(
        device=r["device_id"],
        kind=r["kind"],
        asked=r["command"] is not None,
        via=via,  # type: ignore[arg-type]
        note=_NO_DOWNLINK if via is None else None,
        command=r["command"],
        command_status=r["command_status"],
        answer=Answer(
            ts=r["fix_ts"], lat=r["lat"], lon=r["lon"], acc=r["acc"], answered_at=r["answered_at"]
        )
        if r["answered_at"] is not None
        else None,
    )


async def _requests(conn: Conn, rows: list[Row]) -> list[LocateRequest]:
    devices: dict[int, list[LocateDevice]] = {}
    for d in await conn.fetch(_DEVICES, [r["id"] for r in rows]):
        devices.setdefault(d["request_id"], []).append(_device(d))
    return [
        LocateRequest(
            id=r["id"],
            supervisee=r["supervisee_id"],
            alert=r["alert_id"],
            requested_by=r["requested_by"],
            requested_at=r["requested_at"],
            answer_until=r["requested_at"] + locate.ANSWER_WINDOW,
            devices=devices.get(r["id"], []),
        )
        for r in rows
    ]


@router.post("/supervisees/{supervisee_id}/locate", response_model=LocateRequest, status_code=202)
async def locate_now(
    ctx: Ctx, user: AlertWorker, supervisee_id: str, body: LocateIn | None = None
) -> LocateRequest:
    """立即定位: ask every device the person wears for a fix now — a tag by its downlink
    (`locate`), an OwnTracks phone by `reportLocation`; a phone on HTTP (OsmAnd) has no
    downlink and says so in its `note`. 202: asked; each device's `answer` (its next fix)
    appears in GET …/locate/{id} as it arrives and, with `alert`, in the alert's timeline
    ('locate', then 'located')."""
    alert_id = body.alert if body else None
    async with ctx.pool.acquire() as conn, conn.transaction():
        await require_supervisee(conn, user, supervisee_id)
        if alert_id is not None:
            alert = await record.get_alert(conn, user.offices, alert_id)
            if alert is None:
                raise not_found(f"alert {alert_id}")
            if alert["supervisee_id"] != supervisee_id:
                raise ApiError(409, f"alert {alert_id} is not about {supervisee_id!r}")
        request_id = await locate.request(
            conn, supervisee_id, issued_by=user.subject, alert_id=alert_id
        )
        if request_id is None:
            raise ApiError(409, f"{supervisee_id!r} wears no device（该对象未佩戴任何设备）")
        await audit.record(
            conn,
            user,
            "supervisee.locate",
            f"supervisee:{supervisee_id}",
            {"request": request_id, "alert": alert_id},
        )
        [made] = await _requests(
            conn, await conn.fetch(_REQUESTS + " AND id = $2", supervisee_id, request_id)
        )
    return made


@router.get("/supervisees/{supervisee_id}/locate", response_model=LocateRequestList)
async def list_locates(ctx: Ctx, user: User, supervisee_id: str) -> LocateRequestList:
    """The person's latest locate-now requests (newest first) with their answers."""
    async with ctx.pool.acquire() as conn:
        await require_supervisee(conn, user, supervisee_id)
        rows = await conn.fetch(
            _REQUESTS + " ORDER BY requested_at DESC, id DESC LIMIT $2", supervisee_id, RECENT
        )
        await audit.record(conn, user, "supervisee.locate.read", f"supervisee:{supervisee_id}")
        return LocateRequestList(items=await _requests(conn, rows))


@router.get("/supervisees/{supervisee_id}/locate/{request_id}", response_model=LocateRequest)
async def get_locate(
    ctx: Ctx, user: User, supervisee_id: str, request_id: RequestId
) -> LocateRequest:
    """One locate-now request and the answers so far."""
    async with ctx.pool.acquire() as conn:
        await require_supervisee(conn, user, supervisee_id)
        rows = await conn.fetch(_REQUESTS + " AND id = $2", supervisee_id, request_id)
        if not rows:
            raise not_found(f"locate request {request_id}")
        await audit.record(
            conn,
            user,
            "supervisee.locate.read",
            f"supervisee:{supervisee_id}",
            {"request": request_id},
        )
        [found] = await _requests(conn, rows)
    return found
