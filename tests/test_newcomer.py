"""A customer enrolled by a bulk path (``NewMember``, ``enrol_many``) gets the same row as one
enrolled by the API (an ORM ``Member``, ``members.create``)."""

from __future__ import annotations

import dataclasses
from datetime import date, timedelta
from typing import Any, cast

from sqlalchemy import Table, select

from lealta.kit.clock import FixedClock
from lealta.kit.db import Database
from lealta.members import service as members
from lealta.members.newcomer import NewMember
from lealta.members.schemas import MemberCreate, MemberFields
from lealta.models import Account, Member

PROFILE = {
    "email": "ana@example.com",
    "name": "Ana",
    "phone": "+34600000000",
    "birthday": date(1990, 5, 17),
    "language": "en",
    "attributes": {"store": "norte", "vip": True},
    "tags": ["b", "a", "b"],
}


def test_a_new_member_has_every_column_of_the_table_but_the_id() -> None:
    columns = {c.key for c in cast(Table, Member.__table__).columns} - {"id"}
    assert {f.name for f in dataclasses.fields(NewMember)} == columns


def _row(db: Database, model: Any, *where: Any) -> dict[str, Any]:
    with db.unit_of_work(write=False) as session:
        found = session.execute(select(model.__table__).where(*where)).one()._asdict()
    return {k: v for k, v in found.items() if k not in ("id", "member_id", "external_id")}


def test_bulk_and_api_enrolments_write_the_same_rows(db: Database, clock: FixedClock) -> None:
    now, at = clock.now(), clock.now() - timedelta(days=3)
    with db.unit_of_work() as session:
        members.create(
            session,
            MemberCreate(external_id="api-1", enrolment_channel="web", **PROFILE),
            now=now,
            enrolled_at=at,
        )
        plain = members.new_member("bulk-1", MemberFields(**PROFILE), channel="web", at=at, now=now)
        ids, created = members.enrol_many(session, [plain], now=now)
    assert set(created) == {ids["bulk-1"]}
    api = _row(db, Member, Member.external_id == "api-1")
    bulk = _row(db, Member, Member.external_id == "bulk-1")
    assert bulk == api
    assert bulk["tags"] == ["a", "b"] and bulk["session_generation"] == 0
    with db.unit_of_work(write=False) as session:
        first = session.scalars(select(Member.id).where(Member.external_id == "api-1")).one()
    assert _row(db, Account, Account.member_id == ids["bulk-1"]) == _row(
        db, Account, Account.member_id == first
    )
    # Without a profile: the defaults a flush would give.
    with db.unit_of_work() as session:
        bare = members.new_member("bulk-2", None, channel="event", at=at, now=now)
        members.enrol_many(session, [bare], now=now)
    row = _row(db, Member, Member.external_id == "bulk-2")
    assert (row["language"], row["timezone"], row["attributes"], row["tags"]) == (
        "es", "Europe/Madrid", {}, []
    )  # fmt: skip
    assert (row["email"], row["avatar_path"], row["plan_id"]) == (None, None, None)
