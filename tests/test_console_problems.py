"""Validation problems on console pages read in the page's language (Pydantic writes English)."""

# ruff: noqa: F811

from __future__ import annotations

from typing import Any

import yaml
from fastapi.testclient import TestClient

from lealta.programme import service as programmes
from lealta.web import i18n
from lealta.web import problems as wording
from tests.i18n_leaks import english_leaks
from tests.test_admin_ops import DEMO, Console, console, text_of, validate  # noqa: F401


def _problems(document: dict[str, Any]) -> list[dict[str, Any]]:
    try:
        programmes.validate(document)
    except programmes.ProgrammeInvalid as exc:
        assert isinstance(exc.details, list)
        return exc.details
    raise AssertionError("the document was valid")


def test_problems_keep_their_type_and_context_and_read_in_spanish() -> None:
    document = DEMO.model_dump(mode="json")
    document["rules"][0]["points"] = -3
    document["rewards"][0]["cost"] = "mucho"
    document["thresholds"][0]["reward"] = "no-such-reward"
    found = _problems(document)
    by_path = {p["path"]: p for p in found}
    low = by_path["rules.0.points"]
    assert low["type"] == "greater_than_equal" and low["ctx"] == {"ge": "0"}
    es = i18n.gettext_for("es")
    assert wording.message(low, es) == "Debe ser mayor o igual que 0"
    assert wording.message(by_path["rewards.0.cost"], es) == "Debe ser un número entero"
    en = i18n.gettext_for("en")
    assert wording.message(low, en) == "Input should be greater than or equal to 0"
    # Our own cross-reference checks keep their message.
    own = {"path": "thresholds.0.reward", "message": "unknown reward 'x'", "type": "value_error"}
    assert wording.message(own, es) == "unknown reward 'x'"
    assert wording.summary([low, own], es) == (
        "rules.0.points: Debe ser mayor o igual que 0 (y 1 más)"
    )


def test_every_worded_type_has_a_spanish_translation_with_the_same_placeholders() -> None:
    es = i18n.gettext_for("es")
    for template in wording.MESSAGES.values():
        placeholders = {part.split(")")[0] for part in template.split("%(")[1:]}
        values = {name: f"<{name}>" for name in placeholders}
        translated = es(template, **values)
        assert i18n.translations("es").gettext(template) != template, template
        for name in placeholders:
            assert f"<{name}>" in translated, (template, translated)


def test_the_programme_page_shows_problems_in_spanish(console: Console) -> None:
    client: TestClient = console("marketer")
    client.cookies.set("lealta_lang", "es")
    document = DEMO.model_dump(mode="json")
    document["rules"][0]["points"] = -3
    response = validate(client, yaml.safe_dump(document, allow_unicode=True))
    assert response.status_code == 422
    text = text_of(response.text)
    assert "Debe ser mayor o igual que 0" in text
    assert "Input should be" not in text
    assert english_leaks(response.text) == []
