"""The console's results page of a campaign: per-arm figures, a chart of the conversion rate
per arm with its interval, the lift of each variant over the holdout in plain words, and the
table as CSV. Read-only; the figures come from :mod:`lealta.experiments.results`."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from babel.numbers import format_currency, format_decimal
from fastapi import APIRouter, Request
from fastapi.responses import Response

from lealta.experiments import chart, results, stats
from lealta.experiments.api import to_csv
from lealta.experiments.schema import CONTROL
from lealta.experiments.schemas import results_out
from lealta.kit.http import ClockDep, DbDep, SettingsDep
from lealta.programme.types import name_in
from lealta.staff.service import require
from lealta.web import i18n
from lealta.web.admin.deps import StaffDep
from lealta.web.admin.pages import show
from lealta.web.errors import error_page

router = APIRouter(prefix="/admin/campaigns", include_in_schema=False)
DASH, MINUS, ELLIPSIS = "\u2013", "\u2212", "\u2026"
Cell = tuple[str, str]


def status_labels(_: Callable[..., str]) -> dict[str, str]:
    return {
        "pending": _("Not processed yet"),
        "sent": _("Message sent"),
        "held_out": _("Held out"),
        "suppressed": _("Suppressed (another campaign)"),
        "no_consent": _("No consent"),
        "capped": _("Frequency cap"),
        "failed": _("Sending failed"),
        "cancelled": _("Cancelled before sending"),
    }


def campaign_status_labels(_: Callable[..., str]) -> dict[str, str]:
    return {
        "scheduled": _("Scheduled"),
        "running": _("In progress"),
        "paused": _("Paused"),
        "cancelled": _("Cancelled campaign"),
        "completed": _("Finished"),
    }


def reason_text(_: Callable[..., str], reason: str | None) -> str:
    return {
        stats.EMPTY_ARM: _("an arm has no reached member yet"),
        stats.TOO_FEW: _("an arm has fewer than two reached members"),
        stats.NO_VARIANCE: _("nobody bought anything in either arm"),
    }.get(reason or "", _("not enough data"))


class Formats:
    """Numbers in the page's language."""

    def __init__(self, lang: str, currency: str) -> None:
        self.lang, self.currency = lang, currency

    def pct(self, fraction: float | None) -> str:
        if fraction is None:
            return DASH
        sign = "\u00a0%" if self.lang == "es" else "%"
        return format_decimal(fraction * 100, "#,##0.0", locale=self.lang) + sign

    def level(self, confidence: float) -> str:
        """A confidence level: 95 %, 97.5 %."""
        sign = "\u00a0%" if self.lang == "es" else "%"
        return format_decimal(confidence * 100, "#,##0.##", locale=self.lang) + sign

    def signed_pct(self, fraction: float | None) -> str:
        if fraction is None:
            return DASH
        text = self.pct(abs(fraction))
        return ("+" if fraction > 0 else MINUS if fraction < 0 else "") + text

    def points(self, fraction: float) -> str:
        """A difference of rates in percentage points, signed."""
        return format_decimal(fraction * 100, f"+#,##0.0;{MINUS}#,##0.0", locale=self.lang)

    def number(self, value: int) -> str:
        return format_decimal(value, locale=self.lang)

    def money(self, amount: Decimal | None, *, signed: bool = False) -> str:
        if amount is None:
            return DASH
        text = format_currency(amount, self.currency, locale=self.lang)
        return ("+" + text) if signed and amount > 0 else text.replace("-", MINUS)


def _labels(r: results.Results, _: Callable[..., str], lang: str) -> dict[str, str]:
    out = {}
    for a in r.arms:
        if a.holdout:
            out[a.arm] = _("Holdout")
        elif a.arm == CONTROL and not r.experiment:
            out[a.arm] = _("All recipients")
        else:
            out[a.arm] = name_in(a.name, lang) if a.name else a.arm
    return out


def _verdicts(
    r: results.Results, labels: dict[str, str], f: Formats, _: Callable[..., str]
) -> list[dict[str, str]]:
    level = f.level(r.confidence)
    out = []
    for a in r.arms:
        if a.holdout or a.conversion_lift is None:
            continue
        c, m, arm = a.conversion_lift, a.revenue_lift, labels[a.arm]
        if c.low is None or c.high is None or c.value is None:
            conversion = _(
                "%(arm)s: no interval for the conversion rate yet (%(reason)s).",
                arm=arm,
                reason=reason_text(_, c.reason),
            )
            kind = "none"
        else:
            ci = dict(level=level, low=f.points(c.low), high=f.points(c.high))
            diff = format_decimal(abs(c.value) * 100, "#,##0.0", locale=f.lang)
            if c.direction == 1:
                conversion = _(
                    "%(arm)s converts %(diff)s points better than the holdout"
                    " (%(level)s CI %(low)s to %(high)s).",
                    arm=arm, diff=diff, **ci,
                )  # fmt: skip
                kind = "better"
            elif c.direction == -1:
                conversion = _(
                    "%(arm)s converts %(diff)s points worse than the holdout"
                    " (%(level)s CI %(low)s to %(high)s).",
                    arm=arm, diff=diff, **ci,
                )  # fmt: skip
                kind = "worse"
            else:
                conversion = _(
                    "%(arm)s: no detectable difference in conversion from the holdout"
                    " (%(level)s CI %(low)s to %(high)s points).",
                    arm=arm, **ci,
                )  # fmt: skip
                kind = "same"
        revenue = ""
        if m is not None and m.value is not None:
            value = r.money(m.value)
            if m.low is None or m.high is None:
                revenue = _(
                    "Revenue per member: %(diff)s against the holdout, no interval (%(reason)s).",
                    diff=f.money(value, signed=True),
                    reason=reason_text(_, m.reason),
                )
            else:
                ci = dict(level=level, low=f.money(r.money(m.low)), high=f.money(r.money(m.high)))
                if m.direction == 0:
                    revenue = _(
                        "Revenue per member: no detectable difference (%(diff)s;"
                        " %(level)s CI %(low)s to %(high)s).",
                        diff=f.money(value, signed=True), **ci,
                    )  # fmt: skip
                else:
                    revenue = _(
                        "Revenue per member: %(diff)s against the holdout"
                        " (%(level)s CI %(low)s to %(high)s).",
                        diff=f.money(value, signed=True), **ci,
                    )  # fmt: skip
        out.append({"kind": kind, "conversion": conversion, "revenue": revenue})
    return out


def _rows(
    r: results.Results, f: Formats, _: Callable[..., str]
) -> list[tuple[str, list[Cell], str]]:
    """The table with figures as rows and arms as columns (few arms: fits a phone); a cell
    is its figure and, below it, its interval."""
    statuses = status_labels(_)

    def each(fn: Callable[[results.ArmResult], str | Cell]) -> list[Cell]:
        return [(v, "") if isinstance(v, str) else v for v in (fn(a) for a in r.arms)]

    def message(fn: Callable[[results.ArmResult], int]) -> list[Cell]:
        return each(lambda a: DASH if a.holdout else f.number(fn(a)))

    def rate(a: results.ArmResult) -> Cell:
        w = stats.wilson(a.conversions, a.reached, r.confidence)
        text = f.pct(a.conversion_rate)
        return (text, f"{f.pct(w[0])} {DASH} {f.pct(w[1])}" if w else "")

    def lift(a: results.ArmResult) -> Cell:
        c = a.conversion_lift
        if c is None or c.value is None:
            return (DASH, "")
        if c.low is None or c.high is None:
            return (f.points(c.value), "")
        return (f.points(c.value), f"{f.points(c.low)} {ELLIPSIS} {f.points(c.high)}")

    def revenue_lift(a: results.ArmResult) -> Cell:
        m = a.revenue_lift
        if m is None or m.value is None:
            return (DASH, "")
        text = f.money(r.money(m.value), signed=True)
        if m.low is None or m.high is None:
            return (text, "")
        return (text, f"{f.money(r.money(m.low))} {ELLIPSIS} {f.money(r.money(m.high))}")

    def status_mix(a: results.ArmResult) -> str:
        return ", ".join(
            f"{statuses.get(k, k)} {f.number(v)}" for k, v in sorted(a.statuses.items()) if v
        )

    level = f.level(r.confidence)
    rows = [
        (_("Members assigned"), each(lambda a: f.number(a.audience)), ""),
        (_("By status"), each(status_mix), ""),
        (_("Reached"), each(lambda a: f.number(a.reached)), _("denominator of every rate")),
        (_("Delivered"), message(lambda a: a.delivered), _("messages sent")),
        (_("Opened"), message(lambda a: a.opened), _("where the channel reports it")),
        (_("Clicked"), message(lambda a: a.clicked), _("where the channel reports it")),
        (_("Conversions"), each(lambda a: f.number(a.conversions)), ""),
        (
            _("Conversion rate"),
            each(rate),
            _("below: its %(level)s interval", level=level),
        ),
        (_("Net revenue"), each(lambda a: f.money(r.money(a.revenue_minor))), ""),
        (
            _("Revenue per member"),
            each(lambda a: f.money(r.money(a.revenue_per_member_minor))),
            _("net of refunds, over reached members"),
        ),
        (_("Points given"), each(lambda a: f.number(a.points)), ""),
        (_("Points cost"), each(lambda a: f.money(r.money(a.points_cost_minor))), ""),
        (_("Coupons used"), each(lambda a: f.number(a.coupon_uses)), ""),
        (_("Coupon cost"), each(lambda a: f.money(r.money(a.coupon_cost_minor))), ""),
    ]
    if r.holdout is not None:
        rows += [
            (
                _("Conversion vs holdout"),
                each(lift),
                _("percentage points, %(level)s interval", level=level),
            ),
            (
                _("Relative lift"),
                each(lambda a: f.signed_pct(a.relative_lift)),
                "",
            ),
            (
                _("Revenue per member vs holdout"),
                each(revenue_lift),
                _("%(level)s interval", level=level),
            ),
        ]
    return rows


def _page_context(r: results.Results, lang: str, now: Any) -> dict[str, Any]:
    _ = i18n.gettext_for(lang)
    f = Formats(lang, r.currency)
    labels = _labels(r, _, lang)
    bars = []
    for a in r.arms:
        w = stats.wilson(a.conversions, a.reached, r.confidence)
        bars.append(
            chart.Bar(labels[a.arm], a.conversion_rate, w[0] if w else None, w[1] if w else None,
                      a.holdout)
        )  # fmt: skip
    svg = chart.conversion(_("Conversion rate per arm, with its interval"), bars, f.pct)
    name = name_in(r.name, lang) if r.name else r.campaign_id
    return {
        "r": r,
        "name": name,
        "labels": [labels[a.arm] for a in r.arms],
        "holdouts": [a.holdout for a in r.arms],
        "rows": _rows(r, f, _),
        "verdicts": _verdicts(r, labels, f, _),
        "chart": svg,
        "status": campaign_status_labels(_).get(r.status, r.status),
        "level": f.level(r.confidence),
        "complete": r.window_closes_at is not None and r.window_closes_at <= now,
        "cost_per_point": f.money(r.point_cost),
    }


@router.get("/{campaign_id}/results")
def results_page(
    request: Request,
    campaign_id: str,
    db: DbDep,
    clock: ClockDep,
    settings: SettingsDep,
    staff: StaffDep,
) -> Response:
    require(staff, "view")
    now = clock.now()
    try:
        with db.unit_of_work(write=False) as session:
            r = results.load(session, campaign_id, now=now, point_cost=settings.point_cost)
    except results.CampaignNotFound as exc:
        return _not_found(request, exc)
    lang = i18n.negotiate(request)
    return show(request, staff, "admin/experiment_results.html", _page_context(r, lang, now))


def _not_found(request: Request, exc: results.CampaignNotFound) -> Response:
    """The console's error page, worded in the page's language."""
    _ = i18n.gettext_for(i18n.negotiate(request))
    return error_page(
        request, status_code=404, code=exc.code, message=_("There is no campaign with this id.")
    )


@router.get("/{campaign_id}/results.csv")
def results_csv(
    request: Request,
    campaign_id: str,
    db: DbDep,
    clock: ClockDep,
    settings: SettingsDep,
    staff: StaffDep,
) -> Response:
    require(staff, "view")
    now = clock.now()
    try:
        with db.unit_of_work(write=False) as session:
            r = results.load(session, campaign_id, now=now, point_cost=settings.point_cost)
    except results.CampaignNotFound as exc:
        return _not_found(request, exc)
    return Response(
        to_csv(results_out(r, now=now)),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="results-{campaign_id}.csv"',
            "Cache-Control": "no-store",
        },
    )
