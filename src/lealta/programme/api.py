from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime

from lealta.apikeys.deps import Reader, Writer
from lealta.kit.http import (
    ERROR_RESPONSES,
    ClockDep,
    DbDep,
    IdempotencyKey,
    replayable,
    respond,
)
from lealta.kit.idempotency import run_maybe_once
from lealta.programme import service
from lealta.programme.schema import DEFAULT_PROGRAMME, json_schema
from lealta.programme.schemas import ApplyResult, ChangeOut, ProgrammeOut, VersionOut

router = APIRouter(prefix="/v1/programme", tags=["programme"], responses=ERROR_RESPONSES)

EXAMPLE = {
    "name": "Moda Mediterránea",
    "currency": "EUR",
    "earning": {"points_per_unit": 1, "rounding": "down"},
    "tiers": {
        "basis": "spend",
        "period": "lifetime",
        "levels": [
            {"id": "basico", "name": {"es": "Básico"}, "threshold": 0, "multiplier": 1},
            {"id": "plata", "name": {"es": "Plata"}, "threshold": 1000, "multiplier": 1.5},
        ],
    },
    "rules": [
        {
            "id": "review",
            "name": "Leave a review",
            "event": "review.posted",
            "points": 50,
            "condition": "has(event.properties.stars)",
            "caps": {"times_per_day": 1},
        }
    ],
}


@router.get("", response_model=ProgrammeOut, summary="The programme in force")
def get_programme(principal: Reader, db: DbDep, clock: ClockDep) -> ProgrammeOut:
    with db.unit_of_work(write=False) as session:
        row = service.in_force(session, now=clock.now())
    if row is None:
        return ProgrammeOut(
            version=None, activated_at=None, document=DEFAULT_PROGRAMME.model_dump(mode="json")
        )
    return ProgrammeOut(version=row.version, activated_at=row.activated_at, document=row.document)


@router.put(
    "",
    response_model=ApplyResult,
    summary="Apply a new programme version",
    responses=replayable(ApplyResult),
)
def put_programme(
    principal: Writer,
    db: DbDep,
    clock: ClockDep,
    document: Annotated[dict[str, Any], Body(openapi_examples={"demo": {"value": EXAMPLE}})],
    dry_run: Annotated[bool, Query(description="Validate and diff only.")] = False,
    activate_at: Annotated[
        AwareDatetime | None, Query(description="When the version takes effect.")
    ] = None,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Validate the whole document (errors name their exact path, e.g.
    `tiers.levels.1.threshold`), then store it as the next version with the list of changes
    against the previous one. With `dry_run=true` nothing is stored. With an
    `Idempotency-Key`, a retried request returns the first result instead of storing the
    version again."""
    programme = service.validate(document)
    now = clock.now()
    with db.unit_of_work(write=not dry_run) as session:
        if dry_run:
            changes = service.changes_from_latest(session, programme)
            result = ApplyResult(
                version=None, dry_run=True, activated_at=None, changes=_changes(changes)
            )
            return JSONResponse(result.model_dump(mode="json"))

        def effect() -> tuple[int, dict[str, Any]]:
            applied = service.apply_with_diff(
                session, programme, actor=principal.actor, now=now, activate_at=activate_at
            )
            result = ApplyResult(
                version=applied.version,
                dry_run=False,
                activated_at=applied.activated_at,
                changes=_changes(applied.changes),
            )
            return 200, result.model_dump(mode="json")

        outcome = run_maybe_once(
            session,
            scope="programme.put",
            key=idempotency_key,
            payload={
                "document": document,
                "activate_at": activate_at.isoformat() if activate_at else None,
            },
            now=now,
            effect=effect,
        )
    return respond(outcome)


@router.get("/versions", response_model=list[VersionOut], summary="Version history")
def list_versions(principal: Reader, db: DbDep) -> list[VersionOut]:
    with db.unit_of_work(write=False) as session:
        return [
            VersionOut(
                version=v.version,
                applied_by=v.applied_by,
                activated_at=v.activated_at,
                created_at=v.created_at,
            )
            for v in service.versions(session)
        ]


@router.get("/versions/{number}", response_model=ProgrammeOut, summary="One version")
def get_version(number: int, principal: Reader, db: DbDep) -> ProgrammeOut:
    with db.unit_of_work(write=False) as session:
        row = service.version(session, number)
        return ProgrammeOut(
            version=row.version, activated_at=row.activated_at, document=row.document
        )


@router.get("/schema", summary="JSON Schema of the programme document")
def get_schema() -> dict[str, Any]:
    """Public: editors can validate documents against it."""
    return json_schema()


def _changes(changes: list[Any]) -> list[ChangeOut]:
    return [ChangeOut(path=c.path, kind=c.kind, old=c.old, new=c.new) for c in changes]
