"""The monthly reports the scheduler makes on the 25th (duties.reports): 在册人数核对表 and
法定不批准出境人员报备表, for each justice station and police station, as CSV or XLSX.

They hold names and ID numbers: a caller sees the reports of their own offices, and every
download is audited."""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import quote

from fastapi import APIRouter, Path, Query
from fastapi.responses import Response
from pydantic import BaseModel, Field

from api import audit
from api.auth import User
from api.context import Ctx
from api.errors import not_found
from api.fields import UtcTime
from duties.reports import KINDS

router = APIRouter(tags=["reports"])

Kind = Literal["roster_reconciliation", "no_exit_list"]
ReportId = Annotated[int, Path(ge=1, le=2**63 - 1)]
MEDIA = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}


class Report(BaseModel):
    id: int
    kind: Kind = Field(
        description="roster_reconciliation (在册人数核对), no_exit_list (法定不批准出境人员报备)"
    )
    kind_zh: str
    period: str = Field(description="YYYY-MM")
    office: str | None = Field(description="the justice station (司法所)")
    police_station: str = Field(description="the police station (派出所); '' = not recorded")
    title: str
    as_of: UtcTime
    rows: int
    summary: dict[str, int]
    created_at: UtcTime
    csv: str = Field(description="download link")
    xlsx: str = Field(description="download link")


class ReportList(BaseModel):
    items: list[Report]


@router.get("/reports", response_model=ReportList)
async def list_reports(
    ctx: Ctx,
    user: User,
    kind: Kind | None = None,
    period: Annotated[str | None, Query(pattern=r"^\d{4}-\d{2}$")] = None,
    office: Annotated[str | None, Query(pattern=r"^[^\x00]+$")] = None,
) -> ReportList:
    """Newest first."""
    async with ctx.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT id, kind, period, office_id AS office, police_station, title, as_of, rows,"
            " summary, created_at FROM reports"
            " WHERE ($1::text[] IS NULL OR office_id = ANY($1::text[]))"
            " AND ($2::text IS NULL OR kind = $2) AND ($3::text IS NULL OR period = $3)"
            " AND ($4::text IS NULL OR office_id = $4)"
            " ORDER BY period DESC, kind, office_id, police_station",
            user.offices,
            kind,
            period,
            office,
        )
    return ReportList(
        items=[
            Report.model_validate(
                {
                    **dict(r),
                    "kind_zh": KINDS[r["kind"]],
                    "csv": f"/api/v1/reports/{r['id']}.csv",
                    "xlsx": f"/api/v1/reports/{r['id']}.xlsx",
                }
            )
            for r in rows
        ]
    )


async def _download(ctx: Ctx, user: User, report_id: int, fmt: str) -> Response:
    async with ctx.pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            f"SELECT kind, period, office_id, police_station, {fmt} AS body FROM reports"
            " WHERE id = $1 AND ($2::text[] IS NULL OR office_id = ANY($2::text[]))",
            report_id,
            user.offices,
        )
        if row is None:
            raise not_found(f"report {report_id}")
        await audit.record(conn, user, f"report.download.{fmt}", f"report:{report_id}")
    name = "-".join(
        p for p in (KINDS[row["kind"]], row["period"], row["office_id"], row["police_station"]) if p
    )
    disposition = f"attachment; filename=\"report-{report_id}.{fmt}\"; filename*=UTF-8''" + quote(
        f"{name}.{fmt}"
    )
    return Response(
        content=bytes(row["body"]),
        media_type=MEDIA[fmt],
        headers={"Content-Disposition": disposition},
    )


@router.get(
    "/reports/{report_id}.csv",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}, "description": "UTF-8 CSV with a BOM"}},
)
async def report_csv(ctx: Ctx, user: User, report_id: ReportId) -> Response:
    return await _download(ctx, user, report_id, "csv")


@router.get(
    "/reports/{report_id}.xlsx",
    response_class=Response,
    responses={200: {"content": {MEDIA["xlsx"]: {}}, "description": "Excel workbook"}},
)
async def report_xlsx(ctx: Ctx, user: User, report_id: ReportId) -> Response:
    return await _download(ctx, user, report_id, "xlsx")
