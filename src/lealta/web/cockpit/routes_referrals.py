"""Referrals for members: the cockpit page (``/me/referrals``: the link, its QR code, the
offer, and each friend's status with masked names) and the public landing page of a shared
link (``/r/<code>``), which sets no cookie, counts the visit and tells the friend where to
sign up with the code."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import segno
from babel.numbers import format_currency
from fastapi import APIRouter, Request
from fastapi.responses import Response
from markupsafe import Markup

from lealta.kit.http import ClockDep, DbDep, SettingsDep
from lealta.models import Account
from lealta.programme import service as programmes
from lealta.referrals import maths, service
from lealta.web import i18n
from lealta.web.cockpit.present import Gettext
from lealta.web.cockpit.routes import MemberDep, gettext, language, page
from lealta.web.templating import render

router = APIRouter(include_in_schema=False)


def qr_inline(data: str) -> Markup:
    """The QR code of ``data`` as inline SVG markup (scales with its box)."""
    svg = segno.make(data, error="m").svg_inline(scale=4, border=2, dark="#1f2937")
    return Markup(svg)  # noqa: S704 - segno's own markup, from our link


def status_text(_: Gettext, status: str) -> str:
    return {
        "pending": _("Signed up, waiting for a first order"),
        "waiting": _("Ordered, inside the return window"),
        "rewarded": _("Rewarded"),
        "flagged": _("Under review"),
        "refused": _("Not eligible"),
        "rejected": _("Not eligible"),
        "reversed": _("Order returned"),
        "void": _("Order returned"),
    }.get(status, status)


def offer_lines(_: Gettext, offer: maths.ReferralOffer, fmt_money: Any) -> list[str]:
    lines = []
    if offer.referrer_points:
        if offer.minimum_order > 0:
            lines.append(
                _(
                    "You earn %(points)s points for each friend whose first order of at least "
                    "%(amount)s is kept for %(days)s days.",
                    points=offer.referrer_points,
                    amount=fmt_money(offer.minimum_order, offer.currency),
                    days=offer.return_window_days,
                )
            )
        else:
            lines.append(
                _(
                    "You earn %(points)s points for each friend whose first order is kept for "
                    "%(days)s days.",
                    points=offer.referrer_points,
                    days=offer.return_window_days,
                )
            )
    if offer.friend_text:
        lines.append(offer.friend_text)
    return lines


@router.get("/me/referrals")
def referrals_page(
    request: Request, member: MemberDep, db: DbDep, clock: ClockDep, settings: SettingsDep
) -> Response:
    lang = language(request, member)
    _ = gettext(request, member)
    now = clock.now()
    with db.unit_of_work() as session:
        programme = programmes.current(session, now=now)
        if not programme.referrals.enabled:
            return page(
                request, "cockpit/referrals.html", member, {"here": "referrals", "view": None}
            )
        view = service.for_member(
            session, member, programme=programme, now=now, base_url=settings.public_url,
            language=lang,
        )  # fmt: skip

    def fmt_money(amount: Any, currency: str) -> str:
        return str(format_currency(amount, currency, locale=lang))

    title = view.offer.title if view.offer else _("Refer a friend")
    share_text = _("Join me and get a welcome gift: %(link)s", link=view.link)
    context = {
        "here": "referrals",
        "view": view,
        "title": title,
        "offer_lines": offer_lines(_, view.offer, fmt_money) if view.offer else [],
        "qr": qr_inline(view.link),
        "friends": [
            {
                "name": f.masked_name,
                "status": f.status,
                "status_text": status_text(_, f.status),
                "joined_at": f.joined_at,
                "points": f.points_earned,
            }
            for f in view.friends
        ],
        "whatsapp": f"https://wa.me/?text={quote(share_text)}",
        "mailto": f"mailto:?subject={quote(title)}&body={quote(share_text)}",
    }
    return page(request, "cockpit/referrals.html", member, context)


# --- the public landing page ---------------------------------------------------------------


@router.get("/r/{code}")
def landing(request: Request, code: str, db: DbDep, clock: ClockDep) -> Response:
    """The friend's page: the offer and the code. No cookie is set (a fresh visitor's empty
    session is dropped); each view counts as a visit of the link."""
    lang = i18n.negotiate(request)
    _ = i18n.gettext_for(lang)
    now = clock.now()
    normal = maths.normalise_code(code[:32])
    context: dict[str, Any] = {"member": None, "code": normal, "offer": None, "found": False}
    status_code = 404
    with db.unit_of_work() as session:
        programme = programmes.current(session, now=now)
        if (
            normal is not None
            and programme.referrals.enabled
            and service.record_visit(session, normal)
        ):
            status_code = 200
            referrer_id = service.referrer_of_code(session, normal)
            account = session.get(Account, referrer_id) if referrer_id is not None else None
            tier = account.tier_id if account is not None else None
            offer = maths.offer_for(programme, tier, lang)
            context.update(
                found=True,
                offer=offer,
                signup_url=maths.signup_link(programme.referrals.signup_url, normal),
                friend_text=(offer.friend_text if offer else ""),
            )
    had_session = bool(request.session)
    response = render(
        request, "cockpit/referral_landing.html", context, language=lang, status_code=status_code
    )
    if not had_session:
        request.session.clear()  # nothing to remember: no session cookie
    if "set-cookie" in response.headers:
        del response.headers["set-cookie"]  # ?lang= picks this page's language, remembers none
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Robots-Tag"] = "noindex"
    return response
