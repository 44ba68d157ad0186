"""The event mix of ``make bench``'s rule-evaluation figure (vi) against the demo programme.

The figure checks, before timing, that each of its eight events earns from exactly the rules
it names; a change to the demo programme that the mix did not follow made ``make bench`` end
in an error after every other figure had run (the referral rules had become the programme's
referral scheme). This test finds such a drift at once.
"""

from __future__ import annotations

from bench.rules import check, demo_mix, rule_evaluation

from lealta.demo.programme import DEMO_PROGRAMME
from lealta.rules.engine import compile_programme


def test_each_event_of_the_mix_earns_from_exactly_the_rules_it_names() -> None:
    cases = demo_mix()
    assert len(cases) == 8
    assert check(compile_programme(DEMO_PROGRAMME), cases) == []
    # Not a vacuous mix: seven of the eight earn, by five different rules.
    earned = [case.expect for case in cases if case.expect]
    assert len(earned) == 7
    assert set().union(*earned) == {
        "base", "shoes-bonus", "double-weekend", "review", "event-attendance",
    }  # fmt: skip


def test_the_figure_reports_no_mismatch() -> None:
    result = rule_evaluation(rounds=2, budget=5.0)
    assert result.mismatches == []
    assert result.evaluate.count >= 8
