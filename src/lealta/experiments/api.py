"""``GET /v1/campaigns/{campaign_id}/results``: per-arm figures and the lift of each variant
over the holdout, with confidence intervals (JSON, or the table as CSV)."""

from __future__ import annotations

import csv
import io
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from lealta.apikeys.deps import Reader
from lealta.config import Settings
from lealta.experiments import results
from lealta.experiments.schemas import ResultsOut, csv_rows, results_out
from lealta.kit.clock import Clock
from lealta.kit.db import Database
from lealta.kit.http import ERROR_RESPONSES, ClockDep, DbDep, SettingsDep
from lealta.programme.types import Slug

router = APIRouter(prefix="/v1/campaigns", tags=["experiments"], responses=ERROR_RESPONSES)


def compute_out(
    database: Database, settings: Settings, clock: Clock, campaign_id: str
) -> ResultsOut:
    now = clock.now()
    with database.unit_of_work(write=False) as session:
        r = results.load(session, campaign_id, now=now, point_cost=settings.point_cost)
    return results_out(r, now=now)


def to_csv(out: ResultsOut) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(csv_rows(out))
    return buffer.getvalue()


@router.get(
    "/{campaign_id}/results",
    response_model=ResultsOut,
    summary="Results of a campaign's experiment",
    responses={200: {"content": {"text/csv": {}}}},
)
async def get_results(
    campaign_id: Slug,
    principal: Reader,
    db: DbDep,
    clock: ClockDep,
    settings: SettingsDep,
    output: Annotated[
        Literal["json", "csv"],
        Query(alias="format", description="`csv`: the per-arm table as CSV."),
    ] = "json",
) -> ResultsOut | Response:
    """Per arm: audience and statuses, reached, delivered, opened and clicked (where the
    channel reports them), conversions (a paid order, or the experiment's conversion event,
    within `conversion.days` of being reached), conversion rate, net revenue and revenue per
    reached member, points and coupon cost; per variant, the lift over the holdout: the
    conversion-rate difference with a Newcombe hybrid score interval, the relative lift, and
    the revenue-per-member difference with a Welch t interval, at the experiment's
    `confidence`. Computed from stored rows (the same data gives the same figures);
    `complete` says whether every conversion window has closed. Unknown campaign:
    `404 campaign_not_found`."""
    out = await run_in_threadpool(compute_out, db, settings, clock, campaign_id)
    if output == "csv":
        return Response(
            to_csv(out),
            media_type="text/csv; charset=utf-8",
            headers={
                "Content-Disposition": f'attachment; filename="results-{campaign_id}.csv"',
                "Cache-Control": "no-store",
            },
        )
    return out
