"""Monthly assessment (每月计分考评): a person's violations and score for a month, an
office's monthly summary, and the deduction table (duties.assessment)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from api import audit
from api.auth import User
from api.context import Ctx
from api.errors import ApiError, not_found
from api.fields import Name, UtcTime
from duties import assessment
from storage.repo import access as access_repo
from storage.repo import offices as offices_repo
from storage.repo import people as people_repo

router = APIRouter(tags=["assessment"])

Month = Annotated[
    str | None,
    Query(
        pattern=r"^\d{4}-(0[1-9]|1[0-2])$", description="YYYY-MM, local time; default this month"
    ),
]
# Ids are text; a NUL cannot be stored in PostgreSQL text, so it is refused up front.
Id = Annotated[str, Path(pattern=r"^[^\x00]+$")]
AlertType = Annotated[str, Path(pattern=r"^(\*|[a-z][a-z0-9_]{0,63})$")]
# The deduction table applies to everyone: the monitoring centre keeps it (an operator
# token of no office, not one scoped to some offices).
RULE_EDITORS = ("operator",)


def _month(month: str | None, timezone: str) -> str:
    month = month or assessment.current_month(datetime.now(UTC), timezone)
    try:
        assessment.month_range(month, timezone)
    except ValueError as exc:
        raise ApiError(422, f"invalid request: month: {exc}") from None
    return month


class TypeTotal(BaseModel):
    count: int
    points: int


class Violation(BaseModel):
    alert: int = Field(validation_alias="alert_id")
    type: str
    name_zh: str
    occurred_at: UtcTime
    points: int
    rule: str = Field(description="the score_rules entry applied ('*' = the fallback)")
    recorded_at: UtcTime


class PersonAssessment(BaseModel):
    supervisee: str
    month: str
    base: int
    deductions: int
    score: int
    by_type: dict[str, TypeTotal]
    violations: list[Violation]


class PersonLine(BaseModel):
    supervisee: str
    name: str
    office: str | None
    violations: int
    deductions: int
    score: int


class OfficeAssessment(BaseModel):
    office: str
    month: str
    base: int
    people: int
    with_violations: int
    deductions: int
    items: list[PersonLine]


class ScoreRule(BaseModel):
    alert_type: str = Field(description="an alert type, or '*' for any other")
    points: int
    name_zh: str
    updated_by: str | None
    updated_at: UtcTime


class ScoreRuleList(BaseModel):
    items: list[ScoreRule]


class ScoreRuleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    points: int = Field(ge=0, le=100)
    name_zh: Name = ""


@router.get("/supervisees/{supervisee_id}/assessment", response_model=PersonAssessment)
async def person_assessment(
    ctx: Ctx, user: User, supervisee_id: Id, month: Month = None
) -> PersonAssessment:
    month = _month(month, ctx.settings.timezone)
    async with ctx.pool.acquire() as conn:
        if await people_repo.get_supervisee(conn, user.offices, supervisee_id) is None:
            raise not_found(f"supervisee {supervisee_id!r}")
        result = await assessment.person_month(conn, supervisee_id, month, ctx.settings.timezone)
        await audit.record(
            conn, user, "assessment.read", f"supervisee:{supervisee_id}", {"month": month}
        )
    return PersonAssessment.model_validate(result)


@router.get("/offices/{office_id}/assessment", response_model=OfficeAssessment)
async def office_assessment(
    ctx: Ctx, user: User, office_id: Id, month: Month = None
) -> OfficeAssessment:
    """Everyone of the office and the offices below it, most points deducted first."""
    month = _month(month, ctx.settings.timezone)
    async with ctx.pool.acquire() as conn:
        if not user.covers(office_id) or await offices_repo.get_office(conn, office_id) is None:
            raise not_found(f"office {office_id!r}")
        offices = await access_repo.office_subtree(conn, office_id)
        lines = await assessment.office_month(conn, offices, month, ctx.settings.timezone)
        await audit.record(conn, user, "assessment.read", f"office:{office_id}", {"month": month})
    return OfficeAssessment(
        office=office_id,
        month=month,
        base=assessment.BASE_SCORE,
        people=len(lines),
        with_violations=sum(1 for line in lines if line["violations"]),
        deductions=sum(line["deductions"] for line in lines),
        items=[PersonLine.model_validate(line) for line in lines],
    )


@router.get("/assessment/rules", response_model=ScoreRuleList)
async def list_rules(ctx: Ctx, user: User) -> ScoreRuleList:
    async with ctx.pool.acquire() as conn:
        rows = await assessment.rules(conn)
    return ScoreRuleList(items=[ScoreRule.model_validate(r) for r in rows])


@router.put("/assessment/rules/{alert_type}", response_model=ScoreRule)
async def put_rule(ctx: Ctx, user: User, alert_type: AlertType, body: ScoreRuleIn) -> ScoreRule:
    """Set the deduction for violations of this alert type from now on; violations already
    recorded keep theirs."""
    if user.role not in RULE_EDITORS or user.offices is not None:
        raise ApiError(
            403,
            "only the monitoring centre (an operator token of no office) may change the"
            " assessment rules: they apply to everyone",
            {"allowed_roles": list(RULE_EDITORS), "office": None},
        )
    async with ctx.pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            "INSERT INTO score_rules (alert_type, points, name_zh, updated_by)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT (alert_type) DO UPDATE SET"
            " points = EXCLUDED.points,"
            " name_zh = COALESCE(NULLIF(EXCLUDED.name_zh, ''), score_rules.name_zh),"
            " updated_by = EXCLUDED.updated_by, updated_at = now()"
            " RETURNING alert_type, points, name_zh, updated_by, updated_at",
            alert_type,
            body.points,
            body.name_zh,
            user.subject,
        )
        await audit.record(
            conn, user, "assessment.rule.put", f"score_rule:{alert_type}", body.model_dump()
        )
    return ScoreRule.model_validate(dict(row or {}))
