"""The rules engine is a pure function: (programme, member snapshot, event) -> postings."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from lealta.programme.schema import Programme
from lealta.rules.engine import (
    EventFacts,
    Item,
    MemberSnapshot,
    ProgrammeCompileError,
    RuleUsage,
    compile_programme,
    evaluate,
)

DEMO = Programme.model_validate(
    yaml.safe_load(Path(__file__).parents[1].joinpath("src/lealta/demo/programme.yaml").read_text())
)
WEDNESDAY = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def member(tier: str | None = "basico", **kw: Any) -> MemberSnapshot:
    return MemberSnapshot(
        member_id=1, external_id="maria", tier=tier, timezone="Europe/Madrid", **kw
    )


def order(total_minor: int, at: datetime = WEDNESDAY, items: tuple[Item, ...] = ()) -> EventFacts:
    return EventFacts(
        event_type="order.paid",
        occurred_at=at,
        properties={},
        order_id="O1",
        order_total_minor=total_minor,
        currency="EUR",
        items=items,
    )


def custom(event_type: str, at: datetime = WEDNESDAY, **props: Any) -> EventFacts:
    return EventFacts(event_type=event_type, occurred_at=at, properties=props)


@pytest.mark.parametrize(
    ("tier", "expected"), [("basico", 100), ("plata", 150), ("oro", 200), ("platino", 250)]
)
def test_seed_000_points_per_euro_by_tier(tier: str, expected: int) -> None:
    postings = evaluate(DEMO, member(tier), order(100_00))
    assert [(p.rule_id, p.points) for p in postings] == [("base", expected)]


def test_rounds_down_per_order() -> None:
    # 99.99 € at Plata = 149.985 points -> 149
    assert evaluate(DEMO, member("plata"), order(99_99))[0].points == 149


def test_minimum_order_value_blocks_base_points() -> None:
    programme = DEMO.model_copy(
        update={"earning": DEMO.earning.model_copy(update={"minimum_order": Decimal(20)})}
    )
    assert evaluate(programme, member(), order(19_99)) == []
    assert evaluate(programme, member(), order(20_00))[0].points == 20


def test_weekend_multiplier_doubles_base_points_only_inside_its_window() -> None:
    black_friday = datetime(2026, 11, 28, 11, 0, tzinfo=UTC)
    inside = evaluate(DEMO, member("oro"), order(50_00, black_friday))
    assert [(p.rule_id, p.points) for p in inside] == [("base", 100), ("double-weekend", 100)]
    after = evaluate(DEMO, member("oro"), order(50_00, datetime(2026, 11, 30, 0, 0, tzinfo=UTC)))
    assert [p.rule_id for p in after] == ["base"]


def test_item_condition_rule_reads_categories_and_total() -> None:
    shoes = (Item("ZAP-1", "calzado", 1, 120_00),)
    shirts = (Item("CAM-1", "camisas", 2, 60_00),)
    assert "shoes-bonus" in [
        p.rule_id for p in evaluate(DEMO, member(), order(120_00, items=shoes))
    ]
    assert "shoes-bonus" not in [
        p.rule_id for p in evaluate(DEMO, member(), order(120_00, items=shirts))
    ]
    assert "shoes-bonus" not in [
        p.rule_id for p in evaluate(DEMO, member(), order(90_00, items=shoes))
    ]


def test_custom_event_rule_with_condition_on_properties() -> None:
    assert [
        (p.rule_id, p.points) for p in evaluate(DEMO, member(), custom("review.posted", stars=4))
    ] == [("review", 50)]
    # the condition needs a 'stars' property; without it the rule does not apply
    assert evaluate(DEMO, member(), custom("review.posted", text="nice")) == []


def test_tier_specific_rule_gives_top_tier_double_points() -> None:
    programme = Programme.model_validate(
        {
            "name": "T",
            "tiers": DEMO.model_dump(mode="json", exclude_none=True)["tiers"],
            "rules": [
                {"id": "visit", "name": "Visit", "event": "store.visit", "points": 200},
                {
                    "id": "visit-top",
                    "name": "Double for Platino",
                    "event": "store.visit",
                    "points": 200,
                    "tiers": ["platino"],
                },
            ],
        }
    )
    basic = evaluate(programme, member("basico"), custom("store.visit"))
    top = evaluate(programme, member("platino"), custom("store.visit"))
    assert sum(p.points for p in basic) == 200
    assert sum(p.points for p in top) == 400


def test_the_demo_pays_referrals_once_through_its_referrals_section() -> None:
    # The referrals section rewards the referrer (500, 1,000 in Platino); no earning rule
    # pays a shop-sent referral.converted on top of it.
    assert DEMO.referrals.referrer_points == 500
    assert evaluate(DEMO, member("platino"), custom("referral.converted")) == []


def test_caps_clip_points_and_count_uses() -> None:
    used = {"review": RuleUsage(points_month=180, times_day=0)}
    assert evaluate(DEMO, member(usage=used), custom("review.posted", stars=5))[0].points == 20
    once = {"review": RuleUsage(times_day=1)}
    assert evaluate(DEMO, member(usage=once), custom("review.posted", stars=5)) == []
    lifetime = {"newsletter": RuleUsage(times_lifetime=1)}
    assert evaluate(DEMO, member(usage=lifetime), custom("newsletter.subscribed")) == []


def test_ride_longer_than_60_minutes_rule() -> None:
    programme = Programme.model_validate(
        {
            "name": "Bicis",
            "rules": [
                {
                    "id": "long-ride",
                    "name": "Ride over an hour",
                    "event": "ride.completed",
                    "points": 30,
                    "condition": "event.properties.minutes > 60",
                },
                {
                    "id": "per-km",
                    "name": "Points per km",
                    "event": "ride.completed",
                    "kind": "per_unit",
                    "points": 2,
                    "per": "event.properties.km",
                },
            ],
        }
    )
    long_ride = evaluate(programme, member(None), custom("ride.completed", minutes=75, km=12.5))
    assert [(p.rule_id, p.points) for p in long_ride] == [("long-ride", 30), ("per-km", 25)]
    short = evaluate(programme, member(None), custom("ride.completed", minutes=45, km=3))
    assert [(p.rule_id, p.points) for p in short] == [("per-km", 6)]


def test_tag_targeted_rule_and_member_attributes_in_cel() -> None:
    programme = Programme.model_validate(
        {
            "name": "T",
            "rules": [
                {
                    "id": "vip-visit",
                    "name": "VIP visit",
                    "event": "store.visit",
                    "points": 10,
                    "tags": ["vip"],
                },
                {
                    "id": "city",
                    "name": "Madrid visit",
                    "event": "store.visit",
                    "points": 5,
                    "condition": "member.attributes.city == 'Madrid' && time.weekday < 5",
                },
            ],
        }
    )
    vip = member(None, tags=("vip",), attributes={"city": "Madrid"})
    assert [p.rule_id for p in evaluate(programme, vip, custom("store.visit"))] == [
        "vip-visit",
        "city",
    ]
    plain = member(None, attributes={"city": "Sevilla"})
    assert evaluate(programme, plain, custom("store.visit")) == []


def test_bad_cel_is_reported_with_its_path() -> None:
    bad = Programme.model_validate(
        {
            "name": "B",
            "rules": [
                {
                    "id": "x",
                    "name": "x",
                    "event": "a.b",
                    "points": 1,
                    "condition": "event.properties.( > 1",
                }
            ],
        }
    )
    with pytest.raises(ProgrammeCompileError) as info:
        compile_programme(bad)
    assert info.value.path == "rules.0.condition"


def test_schema_errors_point_at_the_path() -> None:
    with pytest.raises(ValidationError) as info:
        Programme.model_validate(
            {"name": "B", "tiers": {"levels": [{"id": "a", "name": {"es": "A"}, "threshold": 5}]}}
        )
    assert "threshold 0" in str(info.value)
    with pytest.raises(ValidationError) as info:
        Programme.model_validate(
            {"name": "B", "rules": [{"id": "x", "name": "x", "event": "a", "kind": "points"}]}
        )
    assert "rules.0" in str(info.value)
