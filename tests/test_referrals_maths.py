"""The referral rules without a database: codes, traits and self-referral, caps, the return
window, refunds, masked names and the offer in words (es/en, per tier)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from lealta.referrals import maths
from lealta.referrals.schema import Referrals
from lealta.referrals.service import offer_for, still_qualifies
from tests.test_rewards import DEMO


def test_codes_are_unambiguous_and_normalised() -> None:
    codes = {maths.new_code() for _ in range(500)}
    assert len(codes) == 500
    assert all(len(c) == 8 and not set(c) & set("01OIL") for c in codes)
    assert maths.normalise_code(" ab2c-d3ef ") == "AB2CD3EF"
    assert maths.normalise_code("AB0CD3EF") is None  # 0 is never in a code
    assert maths.normalise_code("<script>") is None
    assert maths.normalise_code(None) is None
    assert maths.signup_link("https://s.example/join?ref={code}", "AB2C") == (
        "https://s.example/join?ref=AB2C"
    )
    assert maths.signup_link(None, "AB2C") is None


def test_shared_traits_find_the_same_person_behind_two_members() -> None:
    ana = maths.traits(
        email="Ana.G+promo@Example.com",
        phone="+34 600 111 222",
        attributes={"device_id": "DEV-1", "address_hash": "h1"},
    )
    twin = maths.traits(email="ana.g@example.com", extra=[{"payment_fingerprint": "x"}])
    assert maths.shared_traits(ana, twin) == ["email"]
    by_phone = maths.traits(phone="600111222")
    assert maths.shared_traits(ana, by_phone) == ["phone"]
    by_order = maths.traits(extra=[{"device_id": "dev-1", "address_hash": "H1"}])
    assert maths.shared_traits(ana, by_order) == ["address_hash", "device_id"]
    stranger = maths.traits(email="luis@example.com", phone="611 000 000")
    assert maths.shared_traits(ana, stranger) == []
    assert maths.traits(phone="12").values == frozenset()  # too short to compare


def test_caps_the_month_and_the_window() -> None:
    section = Referrals(enabled=True, max_per_month=3, max_total=10)
    assert maths.cap_breaches(section, this_month=2, total=9) == []
    assert maths.cap_breaches(section, this_month=3, total=9) == ["cap_month"]
    assert maths.cap_breaches(section, this_month=3, total=10) == ["cap_month", "cap_total"]
    assert maths.cap_breaches(Referrals(), this_month=99, total=99) == []
    at = datetime(2026, 3, 31, 23, 30, tzinfo=UTC)
    assert maths.month_start(at) == datetime(2026, 3, 1, tzinfo=UTC)
    assert not maths.window_cleared(at, at + timedelta(days=30) - timedelta(seconds=1), 30)
    assert maths.window_cleared(at, at + timedelta(days=30), 30)


def test_a_refund_disqualifies_an_order_below_the_minimum_or_emptied() -> None:
    assert still_qualifies(5000, 0, 3000)
    assert still_qualifies(5000, 2000, 3000)
    assert not still_qualifies(5000, 2001, 3000)
    assert not still_qualifies(5000, 5000, 0)
    assert still_qualifies(5000, 4999, 0)


def test_masked_names() -> None:
    assert maths.mask_name("Beatriz Soler", None) == "Beatriz S."
    assert maths.mask_name("Carlos Ruiz Pérez", None) == "Carlos P."
    assert maths.mask_name("Cher", None) == "Cher"
    assert maths.mask_name(None, "lucia@example.com") == "l***@example.com"
    assert maths.mask_name("  ", None) == "***"


def test_the_offer_per_tier_and_language() -> None:
    section = Referrals(
        enabled=True,
        referrer_points=200,
        referrer_points_by_tier={"platino": 400},
        friend_points=50,
        friend_reward="coupon-5",
        minimum_order=Decimal("30"),
    )
    programme = DEMO.model_copy(update={"referrals": section})
    es = offer_for(programme, "plata", "es")
    assert es is not None
    assert (es.title, es.referrer_points) == ("Recomienda a un amigo", 200)
    assert es.friend_text == "Tu amigo recibe 50 puntos y 5 € de descuento."
    en = offer_for(programme, "platino", "en")
    assert en is not None and en.referrer_points == 400
    assert en.friend_text == "Your friend gets 50 points and €5 off."
    off = DEMO.model_copy(update={"referrals": Referrals()})
    assert offer_for(off, None, "es") is None


def test_the_api_documents_every_status() -> None:
    from typing import get_args

    from lealta.models import REFERRAL_STATUSES
    from lealta.referrals.api import Status

    assert get_args(Status) == maths.STATUSES == REFERRAL_STATUSES
