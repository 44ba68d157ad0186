"""GET /v1/members: every filter, every sort both ways, keyset paging that neither repeats nor
skips a member (also while members are added), and 4xx for bad input.

The expected answers come from a plain Python filter and sort over the same rows (the
reference below), so each case checks the SQL against an independent statement of the rule.
"""

from __future__ import annotations

import csv
import html
import io
import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text, update

from lealta.config import Settings
from lealta.kit.clock import FixedClock
from lealta.kit.db import Database
from lealta.members import listing
from lealta.models import Account, AuditLog, Member, Segment, SegmentMember
from lealta.programme.schema import Programme
from tests.conftest import T0, app_for
from tests.factories import PASSWORD, create_staff

LEVELS = ("bronce", "plata", "oro")
PROGRAMME = {
    "name": "Listing",
    "tiers": {
        "levels": [
            {"id": "bronce", "name": {"es": "Bronce"}, "threshold": 0},
            {"id": "plata", "name": {"es": "Plata"}, "threshold": 100},
            {"id": "oro", "name": {"es": "Oro"}, "threshold": 1000},
        ]
    },
    "attributes": {
        "city": "string",
        "kids": "int",
        "vip": "bool",
        "score": "float",
        "since": "date",
    },
}
CITIES = ("Madrid", "Sevilla", "Bilbao")
TAGS = ("vip", "newsletter", "store", "web")
NAMES = ("María García", "maría lópez", "Jordi Puig", "Ana 50%_off", "Zoë Ñúñez", None)


@dataclass
class Ref:
    """What the test set up for one member (the reference the API must agree with)."""

    id: int
    external_id: str
    name: str | None
    email: str | None
    tags: list[str]
    attributes: dict[str, Any]
    enrolled_at: datetime
    tier: str
    tier_stored: str | None
    points_available: int
    lifetime_earned: int
    last_order_at: datetime | None


def _setup(client: TestClient, db: Database, count: int = 45) -> list[Ref]:
    assert client.put("/v1/programme", json=PROGRAMME).status_code == 200
    rng = random.Random(14)
    specs = []
    for i in range(count):
        attributes: dict[str, Any] = {}
        if i % 2 == 0:
            attributes["city"] = CITIES[i % 3]
        if i % 3 == 0:
            attributes["kids"] = i % 4
        if i % 4 != 3:
            attributes["vip"] = i % 5 == 0
        if i % 5 == 0:
            attributes["score"] = [2, 2.5, 7.25][i % 3]
        if i % 6 == 0:
            attributes["since"] = "2024-05-01" if i % 12 == 0 else "2025-01-31"
        tags = sorted(rng.sample(TAGS, rng.randint(0, 3)))
        name = NAMES[i % len(NAMES)]
        body: dict[str, Any] = {
            "external_id": f"m-{i:03d}" if i % 7 else f"Shop-{i:03d}",
            "name": name,
            "tags": tags,
            "attributes": attributes,
        }
        if i % 5 != 4:
            body["email"] = f"user{i}@{'example.com' if i % 2 else 'Tienda.ES'}"
        assert client.post("/v1/members", json=body).status_code == 201
        specs.append(body)
    refs = []
    with db.unit_of_work() as session:
        ids = dict(session.execute(select(Member.external_id, Member.id)).all())
        for i, body in enumerate(specs):
            member_id = ids[body["external_id"]]
            # Ties on purpose: enrolments in groups of three, points from a small set.
            enrolled = T0 - timedelta(days=60 - (i // 3), hours=0)
            stored = [None, "bronce", "plata", "oro", "retired"][i % 5]
            last = None if i % 4 == 1 else T0 - timedelta(days=i % 9, minutes=i % 2)
            points = (i * 37) % 11 * 100
            lifetime = points + (i % 3) * 50
            session.execute(
                update(Member).where(Member.id == member_id).values(enrolled_at=enrolled)
            )
            session.execute(
                update(Account)
                .where(Account.member_id == member_id)
                .values(
                    tier_id=stored,
                    points_available=points,
                    lifetime_earned=lifetime,
                    last_order_at=last,
                )
            )
            refs.append(
                Ref(
                    id=member_id,
                    external_id=body["external_id"],
                    name=body["name"],
                    email=body.get("email"),
                    tags=body["tags"],
                    attributes=body["attributes"],
                    enrolled_at=enrolled,
                    tier=stored if stored in LEVELS else "bronce",
                    tier_stored=stored,
                    points_available=points,
                    lifetime_earned=lifetime,
                    last_order_at=last,
                )
            )
    return refs


@pytest.fixture
def refs(client: TestClient, db: Database) -> list[Ref]:
    return _setup(client, db)


def _order(refs: list[Ref], sort: str, order: str) -> list[str]:
    """The reference order: filled keys ascending then empty ones (descending: the reverse),
    ties broken by id."""
    filled = sorted(
        (r for r in refs if getattr(r, sort) is not None),
        key=lambda r: (getattr(r, sort), r.id),
    )
    empty = sorted((r for r in refs if getattr(r, sort) is None), key=lambda r: r.id)
    ordered = filled + empty
    if order == "desc":
        ordered.reverse()
    return [r.external_id for r in ordered]


def _all_pages(client: TestClient, params: dict[str, Any], limit: int) -> list[str]:
    seen: list[str] = []
    cursor = None
    for _ in range(200):
        query = {**params, "limit": limit}
        if cursor:
            query["cursor"] = cursor
        r = client.get("/v1/members", params=query)
        assert r.status_code == 200, r.text
        body = r.json()
        assert len(body["items"]) <= limit
        seen += [item["external_id"] for item in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            return seen
        assert len(body["items"]) == limit
    raise AssertionError("paging did not end")


# --- sorts and paging ----------------------------------------------------------------------


@pytest.mark.parametrize("sort", listing.SORTS)
@pytest.mark.parametrize("order", ["asc", "desc"])
def test_every_sort_pages_through_everyone_once_in_order(
    client: TestClient, refs: list[Ref], sort: str, order: str
) -> None:
    expected = _order(refs, sort, order)
    for limit in (7, 200):
        seen = _all_pages(client, {"sort": sort, "order": order}, limit)
        assert seen == expected, (sort, order, limit)


def test_default_is_newest_enrolment_first_fifty_a_page(
    client: TestClient, refs: list[Ref]
) -> None:
    body = client.get("/v1/members").json()
    assert [i["external_id"] for i in body["items"]] == _order(refs, "enrolled_at", "desc")[:45]
    assert body["next_cursor"] is None
    first = body["items"][0]
    ref = next(r for r in refs if r.external_id == first["external_id"])
    assert first["tier"] == ref.tier
    assert first["points_available"] == ref.points_available
    assert first["tags"] == ref.tags
    assert first["attributes"] == ref.attributes
    assert set(first) >= {"email", "name", "lifetime_earned", "last_order_at", "enrolled_at"}


def test_paging_neither_repeats_nor_skips_while_members_are_added(
    client: TestClient, refs: list[Ref]
) -> None:
    seen: list[str] = []
    cursor = None
    added = 0
    while True:
        params: dict[str, Any] = {"sort": "enrolled_at", "order": "desc", "limit": 6}
        if cursor:
            params["cursor"] = cursor
        body = client.get("/v1/members", params=params).json()
        seen += [i["external_id"] for i in body["items"]]
        # A new member (enrolled now: at the head of this order) arrives between pages.
        client.post("/v1/members", json={"external_id": f"late-{added}"})
        added += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen))
    assert [s for s in seen if not s.startswith("late-")] == _order(refs, "enrolled_at", "desc")


# --- filters -------------------------------------------------------------------------------


def _in(low: Any, high: Any) -> Callable[[Any], bool]:
    return lambda v: v is not None and low <= v <= high


CASES: list[tuple[dict[str, Any], Callable[[Ref], bool]]] = [
    ({"tier": "oro"}, lambda r: r.tier == "oro"),
    ({"tier": ["plata", "oro"]}, lambda r: r.tier in ("plata", "oro")),
    ({"tier": "bronce"}, lambda r: r.tier == "bronce"),  # none recorded and retired ids too
    ({"tier": "bronce,oro"}, lambda r: r.tier in ("bronce", "oro")),
    ({"tag": "vip"}, lambda r: "vip" in r.tags),
    ({"tag": ["vip", "web"]}, lambda r: bool({"vip", "web"} & set(r.tags))),
    ({"tag": ["vip", "web"], "tag_match": "all"}, lambda r: {"vip", "web"} <= set(r.tags)),
    ({"attr.city": "Sevilla"}, lambda r: r.attributes.get("city") == "Sevilla"),
    ({"attr.kids": "2"}, lambda r: r.attributes.get("kids") == 2),
    ({"attr.kids": "0"}, lambda r: r.attributes.get("kids") == 0),
    ({"attr.vip": "true"}, lambda r: r.attributes.get("vip") is True),
    ({"attr.vip": "FALSE"}, lambda r: r.attributes.get("vip") is False),
    ({"attr.score": "2"}, lambda r: r.attributes.get("score") == 2),
    ({"attr.score": "7.25"}, lambda r: r.attributes.get("score") == 7.25),
    ({"attr.since": "2024-05-01"}, lambda r: r.attributes.get("since") == "2024-05-01"),
    (
        {"attr.city": "Madrid", "attr.vip": "false"},
        lambda r: r.attributes.get("city") == "Madrid" and r.attributes.get("vip") is False,
    ),
    (
        {"enrolled_from": (T0 - timedelta(days=55)).date().isoformat()},
        lambda r: r.enrolled_at >= T0 - timedelta(days=55, hours=12),
    ),
    (
        {"enrolled_to": (T0 - timedelta(days=55)).date().isoformat()},  # through that day
        lambda r: r.enrolled_at < T0 - timedelta(days=54, hours=12),
    ),
    (
        {
            "enrolled_from": (T0 - timedelta(days=58)).isoformat(),
            "enrolled_to": (T0 - timedelta(days=50)).isoformat(),
        },
        lambda r: _in(T0 - timedelta(days=58), T0 - timedelta(days=50))(r.enrolled_at),
    ),
    (
        {"last_order_from": "2026-01-01T12:00:00Z", "last_order_to": "2026-01-04T12:00:00"},
        lambda r: _in(T0 - timedelta(days=4), T0 - timedelta(days=1))(r.last_order_at),
    ),
    (
        {"last_order_to": "2025-12-31"},  # through the end of that day
        lambda r: (
            r.last_order_at is not None and r.last_order_at < datetime(2026, 1, 1, tzinfo=UTC)
        ),
    ),
    ({"points_min": "500"}, lambda r: r.points_available >= 500),
    ({"points_max": "300"}, lambda r: r.points_available <= 300),
    ({"points_min": "200", "points_max": "200"}, lambda r: r.points_available == 200),
    ({"lifetime_earned_min": "1000"}, lambda r: r.lifetime_earned >= 1000),
    ({"lifetime_earned_max": "50"}, lambda r: r.lifetime_earned <= 50),
    ({"q": "maría"}, lambda r: "maría" in (r.name or "").lower()),
    # ASCII letters fold on both engines (SQLite's LIKE folds no others).
    ({"q": "MARíA G"}, lambda r: (r.name or "").startswith("María G")),
    ({"q": "tienda.es"}, lambda r: "tienda.es" in (r.email or "").lower()),
    ({"q": "shop-"}, lambda r: r.external_id.startswith("Shop-")),
    ({"q": "50%_"}, lambda r: "50%_" in (r.name or "")),
    ({"q": "%"}, lambda r: "%" in (r.name or "")),
    ({"q": "_"}, lambda r: "_" in (r.name or "") + r.external_id + (r.email or "")),
    ({"q": "nobody-at-all"}, lambda r: False),
    (
        {"tier": "plata", "tag": "web", "points_min": "100", "q": "m-0"},
        lambda r: (
            r.tier == "plata"
            and "web" in r.tags
            and r.points_available >= 100
            and r.external_id.startswith("m-0")
        ),
    ),
]


def _prefix_reference(q: str, keep: Callable[[Ref], bool]) -> Callable[[Ref], bool]:
    """The reference of a search alone when only beginnings match (the combined case's
    search, ``m-0``, is a prefix of what it finds either way)."""

    def starts(r: Ref) -> bool:
        fields = (r.external_id, r.email or "", r.name or "")
        return any(f.lower().startswith(q.lower()) for f in fields)

    return starts if q != "m-0" else keep


@pytest.mark.parametrize(("params", "keep"), CASES, ids=[str(c[0]) for c in CASES])
def test_filters_match_the_reference(
    client: TestClient,
    db: Database,
    refs: list[Ref],
    params: dict[str, Any],
    keep: Callable[[Ref], bool],
) -> None:
    with db.unit_of_work(write=False) as session:
        mode = listing.search_mode(session)
    if "q" in params and mode == "prefix":
        # A PostgreSQL without pg_trgm matches the beginning of each field (any case).
        keep = _prefix_reference(params["q"], keep)
    expected = [r for r in refs if keep(r)]
    assert len(expected) < len(refs)  # every case filters something out
    assert expected or params == {"q": "nobody-at-all"} or mode == "prefix"
    for sort, order in (("enrolled_at", "desc"), ("last_order_at", "asc"), ("name", "desc")):
        seen = _all_pages(client, {**params, "sort": sort, "order": order}, limit=4)
        assert seen == _order(expected, sort, order), (params, sort, order)


def test_the_search_is_case_insensitive_on_postgresql_beyond_ascii(
    client: TestClient, refs: list[Ref], db: Database
) -> None:
    if db.dialect != "postgresql":
        pytest.skip("SQLite's LIKE folds ASCII letters only (documented)")
    seen = _all_pages(client, {"q": "ZOË ÑÚ"}, limit=50)
    assert seen and seen == _order(
        [r for r in refs if r.name == "Zoë Ñúñez"], "enrolled_at", "desc"
    )


def test_on_postgresql_the_search_has_its_indexes(db: Database) -> None:
    """Trigram GIN indexes with pg_trgm; b-tree ``lower()`` indexes (prefixes) without."""
    if db.dialect != "postgresql":
        pytest.skip("PostgreSQL only")
    with db.unit_of_work(write=False) as session:
        mode = listing.search_mode(session)
        session.execute(text("SET LOCAL enable_seqscan = off"))
        for column in ("external_id", "email", "name"):
            if mode == "contains":
                where, index = f"{column} ILIKE '%abc%'", f"ix_members_{column}_trgm"
            else:
                where, index = f"lower({column}) LIKE 'abc%'", f"ix_members_{column}_lower"
            explain = text(f"EXPLAIN SELECT id FROM members WHERE {where}")
            plan = "\n".join(session.execute(explain).scalars())
            assert index in plan, plan


# --- bad input -----------------------------------------------------------------------------


BAD: list[tuple[dict[str, Any], str, str]] = [
    ({"tier": "diamante"}, "unknown_tier", "tier"),
    ({"attr.shoe": "42"}, "unknown_attribute", "attr.shoe"),
    ({"attr.kids": "two"}, "invalid_attribute", "attr.kids"),
    ({"attr.vip": "yes"}, "invalid_attribute", "attr.vip"),
    ({"attr.score": "nan"}, "invalid_attribute", "attr.score"),
    ({"attr.since": "yesterday"}, "invalid_attribute", "attr.since"),
    ({"colour": "red"}, "unknown_filter", "colour"),
    ({"sort": "tier"}, "invalid_filter", "sort"),
    ({"order": "up"}, "invalid_filter", "order"),
    ({"limit": "0"}, "invalid_filter", "limit"),
    ({"limit": "201"}, "invalid_filter", "limit"),
    ({"limit": "ten"}, "invalid_filter", "limit"),
    ({"points_min": "-1"}, "invalid_filter", "points_min"),
    ({"points_min": "1e3"}, "invalid_filter", "points_min"),
    ({"points_max": "99999999999999999999999"}, "invalid_filter", "points_max"),
    ({"points_min": "10", "points_max": "5"}, "invalid_filter", "points_min"),
    ({"enrolled_from": "2026-13-01"}, "invalid_filter", "enrolled_from"),
    (
        {"enrolled_from": "2026-02-01", "enrolled_to": "2026-01-01"},
        "invalid_filter",
        "enrolled_from",
    ),
    ({"last_order_to": "tomorrow"}, "invalid_filter", "last_order_to"),
    ({"tag_match": "most"}, "invalid_filter", "tag_match"),
    ({"q": "x" * 201}, "invalid_filter", "q"),
    ({"q": "a\x00b"}, "invalid_filter", "q"),
    ({"sort": ["name", "points_available"]}, "invalid_filter", "sort"),
    ({"cursor": "not-a-cursor"}, "invalid_cursor", "cursor"),
    ({"cursor": "eyJ4IjoxfQ.AAAA"}, "invalid_cursor", "cursor"),
]


@pytest.mark.parametrize(("params", "code", "param"), BAD, ids=[b[1] + str(b[0])[:40] for b in BAD])
def test_bad_input_is_a_422_naming_the_parameter(
    client: TestClient, refs: list[Ref], params: dict[str, Any], code: str, param: str
) -> None:
    r = client.get("/v1/members", params=params)
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == code
    assert error["details"]["param"] == param
    assert param.split(".")[0] in error["message"]


def _segments(db: Database) -> dict[str, list[str]]:
    """Two static segments over the first members by id: vip (3) and lapsed (3, one shared)."""
    with db.unit_of_work() as session:
        ids = {m.external_id: m.id for m in session.scalars(select(Member))}
        picked = {"vip": sorted(ids)[:3], "lapsed": sorted(ids)[2:5]}
        for key, members in picked.items():
            segment = Segment(
                key=key, source="api", kind="static", definition={}, created_at=T0, updated_at=T0
            )
            session.add(segment)
            session.flush()
            session.add_all(
                SegmentMember(segment_id=segment.id, member_id=ids[m], entered_at=T0)
                for m in members
            )
    return picked


def test_the_segment_filter_lists_the_members_of_any_segment_given(
    client: TestClient, refs: list[Ref], db: Database
) -> None:
    picked = _segments(db)
    found = _all_pages(client, {"segment": "vip", "sort": "external_id", "order": "asc"}, 2)
    assert found == picked["vip"]
    both = _all_pages(client, {"segment": ["vip", "lapsed"], "sort": "external_id"}, 50)
    assert sorted(both) == sorted(set(picked["vip"]) | set(picked["lapsed"]))
    assert client.get("/v1/members", params={"segment": "nobody"}).json()["items"] == []
    r = client.get("/v1/members", params={"segment": "Not A Key"})
    assert (r.status_code, r.json()["error"]["details"]["param"]) == (422, "segment")


def test_a_cursor_only_works_for_the_filters_and_sort_it_was_issued_for(
    client: TestClient, refs: list[Ref]
) -> None:
    first = client.get("/v1/members", params={"sort": "name", "tag": "vip", "limit": 2}).json()
    cursor = first["next_cursor"]
    assert cursor
    same = client.get(
        "/v1/members", params={"sort": "name", "tag": "vip", "limit": 5, "cursor": cursor}
    )
    assert same.status_code == 200  # the page size may change between pages
    for other in ({"sort": "external_id", "tag": "vip"}, {"sort": "name", "tag": "web"},
                  {"sort": "name", "tag": "vip", "order": "asc"}):  # fmt: skip
        r = client.get("/v1/members", params={**other, "cursor": cursor})
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_cursor"
    # A tampered cursor (one character of its body changed) fails its signature.
    body, _, sig = cursor.partition(".")
    forged = ("A" if body[0] != "A" else "B") + body[1:] + "." + sig
    r = client.get("/v1/members", params={"sort": "name", "tag": "vip", "cursor": forged})
    assert r.json()["error"]["code"] == "invalid_cursor"


def test_without_tiers_or_attributes_those_filters_are_refused(client: TestClient) -> None:
    client.post("/v1/members", json={"external_id": "c1"})
    r = client.get("/v1/members", params={"tier": "oro"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "unknown_tier"
    r = client.get("/v1/members", params={"attr.city": "Madrid"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "unknown_attribute"
    body = client.get("/v1/members", params={"tier": "", "q": "c1"}).json()
    assert [i["external_id"] for i in body["items"]] == ["c1"]
    assert body["items"][0]["tier"] is None


def test_read_keys_may_list_and_anonymous_callers_may_not(
    client: TestClient, read_key: str
) -> None:
    client.post("/v1/members", json={"external_id": "c1"})
    r = client.get("/v1/members", headers={"Authorization": f"Bearer {read_key}"})
    assert r.status_code == 200 and len(r.json()["items"]) == 1
    assert client.get("/v1/members", headers={"Authorization": ""}).status_code == 401


# --- the pure half -------------------------------------------------------------------------


def test_parse_reads_a_form_with_empty_fields_as_no_filter() -> None:
    programme = Programme.model_validate(PROGRAMME)
    form = [("q", ""), ("tier", ""), ("points_min", " "), ("sort", "name"), ("lang", "en")]
    query = listing.parse(form, programme=programme, secret="s", ignore={"lang"})
    assert query == listing.ListQuery(sort="name", levels=LEVELS)


def test_cursors_are_signed_with_the_secret() -> None:
    programme = Programme.model_validate(PROGRAMME)
    query = listing.parse([("sort", "points_available")], programme=programme, secret="one")
    cursor = listing.encode_cursor(query, listing.Keyset(500, 7), secret="one")
    resumed = listing.with_cursor(query, cursor, secret="one")
    assert resumed.after == listing.Keyset(500, 7)
    with pytest.raises(listing.InvalidInput):
        listing.with_cursor(query, cursor, secret="two")


# --- the console ---------------------------------------------------------------------------

NEXT = re.compile(r'rel="next" href="([^"]+)"')
ROW = re.compile(r'<td><a href="/admin/members/[^"]+">([^<]+)</a></td>')


@pytest.fixture
def web(
    db: Database, clock: FixedClock, settings: Settings, refs: list[Ref]
) -> Iterator[TestClient]:
    with db.unit_of_work() as session:
        create_staff(session, ["read_only"], now=clock.now())
    app = app_for(settings, db=db, clock=clock)
    with TestClient(app, raise_server_exceptions=False, follow_redirects=False) as c:
        token = re.search(r'name="csrf_token" value="([^"]+)"', c.get("/admin/login").text)
        assert token is not None
        signed = c.post(
            "/admin/login",
            data={"email": "read_only@example.com", "password": PASSWORD, "csrf_token": token[1]},
        )
        assert signed.status_code == 303
        yield c


def _console_pages(web: TestClient, params: dict[str, Any]) -> list[str]:
    seen: list[str] = []
    page = web.get("/admin/members", params=params)
    for _ in range(50):
        assert page.status_code == 200, page.text[:500]
        seen += ROW.findall(page.text)
        link = NEXT.search(page.text)
        if link is None:
            return seen
        page = web.get(html.unescape(link[1]))
        assert 'rel="first"' in page.text
    raise AssertionError("paging did not end")


def test_console_list_filters_sorts_and_pages_like_the_api(
    web: TestClient, refs: list[Ref]
) -> None:
    everyone = _console_pages(web, {"lang": "en"})
    assert everyone == _order(refs, "enrolled_at", "desc")  # 45 members, 25 a page
    params = {"tier": ["plata", "oro"], "sort": "points_available", "order": "asc"}
    expected = [r for r in refs if r.tier in ("plata", "oro")]
    assert _console_pages(web, params) == _order(expected, "points_available", "asc")
    page = web.get("/admin/members", params={**params, "lang": "en"})
    assert f"{len(expected)} members match." in page.text
    assert 'value="oro" checked' in page.text and 'value="bronce" checked' not in page.text


def test_console_bad_filter_is_an_inline_error_in_the_page_language(web: TestClient) -> None:
    for lang, words in (("en", "Points must be whole numbers"), ("es", "Los puntos deben")):
        page = web.get(
            "/admin/members", params={"points_min": "9", "points_max": "2", "lang": lang}
        )
        assert page.status_code == 422
        assert page.headers["content-type"].startswith("text/html")
        assert words in page.text and 'role="alert"' in page.text
        assert 'value="9"' in page.text  # the form keeps what was typed
    page = web.get("/admin/members", params={"attr.kids": "two", "lang": "en"})
    assert page.status_code == 422 and "kids: enter a value of type whole number." in page.text
    assert 'name="attr.kids" value="two"' in page.text


def test_console_stale_page_link_falls_back_to_the_first_page(web: TestClient) -> None:
    page = web.get("/admin/members", params={"cursor": "abc", "lang": "en"})
    assert page.status_code == 200
    assert "That page link no longer applies" in page.text
    assert len(ROW.findall(page.text)) == 25


def test_console_export_streams_the_filtered_list_as_csv_and_is_audited(
    web: TestClient, db: Database, refs: list[Ref], client: TestClient
) -> None:
    client.post(
        "/v1/members", json={"external_id": "evil", "name": "=HYPERLINK(1)", "tags": ["vip"]}
    )
    page = web.get("/admin/members", params={"tag": "vip", "sort": "name", "lang": "en"})
    link = re.search(r'id="export-csv" href="([^"]+)"', page.text)
    assert link is not None
    response = web.get(html.unescape(link[1]))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[0][:5] == ["external_id", "name", "email", "phone", "tier"]
    with_vip = [r.external_id for r in refs if "vip" in r.tags] + ["evil"]
    exported = [row[0] for row in rows[1:]]
    assert sorted(exported) == sorted(with_vip)
    api = client.get("/v1/members", params={"tag": "vip", "sort": "name", "limit": 200}).json()
    assert exported == [item["external_id"] for item in api["items"]]  # the same order
    evil = next(row for row in rows if row[0] == "evil")
    assert evil[1] == "'=HYPERLINK(1)"  # never a formula in a spreadsheet
    with db.unit_of_work(write=False) as session:
        entry = session.scalars(select(AuditLog).where(AuditLog.action == "members.export")).one()
        assert entry.actor.endswith("read_only@example.com")
        assert ["tag", "vip"] in entry.details["filters"]


def test_the_console_filters_by_segment(web: TestClient, db: Database) -> None:
    picked = _segments(db)
    page = web.get(
        "/admin/members", params={"segment": "vip", "sort": "external_id", "order": "asc"}
    )
    assert page.status_code == 200
    assert '<option value="vip" selected>' in page.text
    assert [html.unescape(x) for x in ROW.findall(page.text)] == picked["vip"]
    bad = web.get("/admin/members", params={"segment": "NO WAY"})
    assert bad.status_code == 422
