"""Experiment assignment (pure) and the campaign tables against their migration."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError
from sqlalchemy import create_engine, inspect

from lealta.experiments.assign import BUCKETS, arm_for_bucket, assign, bucket
from lealta.experiments.schema import HOLDOUT, Experiment, Variant
from lealta.kit.db import Base, Database
from lealta.kit.migrate import alembic_config, upgrade

TWO_ARMS = Experiment(holdout_percent=10, variants=[Variant(id="a"), Variant(id="b", weight=3)])


@given(st.text(min_size=1, max_size=64), st.integers(min_value=1, max_value=2**62))
def test_assignment_is_deterministic(campaign: str, member: int) -> None:
    assert assign(campaign, member, TWO_ARMS) == assign(campaign, member, TWO_ARMS)
    assert 0 <= bucket(campaign, member) < BUCKETS


def test_arms_follow_the_holdout_and_the_weights() -> None:
    counts = Counter(assign("spring", member, TWO_ARMS) for member in range(1, 40_001))
    # 10 % holdout, then a:b = 1:3 of the remaining 90 %: 4,000 / 9,000 / 27,000 expected.
    assert abs(counts[HOLDOUT] - 4_000) < 300
    assert abs(counts["a"] - 9_000) < 450
    assert abs(counts["b"] - 27_000) < 600
    assert set(counts) == {HOLDOUT, "a", "b"}


def test_bucket_edges() -> None:
    weights = [("a", 1), ("b", 1)]
    assert arm_for_bucket(0, holdout_percent=10, weights=weights) == HOLDOUT
    assert arm_for_bucket(999, holdout_percent=10, weights=weights) == HOLDOUT
    assert arm_for_bucket(1000, holdout_percent=10, weights=weights) == "a"
    assert arm_for_bucket(5499, holdout_percent=10, weights=weights) == "a"
    assert arm_for_bucket(5500, holdout_percent=10, weights=weights) == "b"
    assert arm_for_bucket(BUCKETS - 1, holdout_percent=10, weights=weights) == "b"
    assert arm_for_bucket(0, holdout_percent=0, weights=weights) == "a"


def test_campaigns_split_independently() -> None:
    first = [assign("one", m, TWO_ARMS) == HOLDOUT for m in range(1, 20_001)]
    second = [assign("two", m, TWO_ARMS) == HOLDOUT for m in range(1, 20_001)]
    both = sum(a and b for a, b in zip(first, second, strict=True))
    assert abs(both - 200) < 80  # 1 % of 20,000 if independent


def test_no_experiment_means_control() -> None:
    assert assign("spring", 7, None) == "control"


@pytest.mark.parametrize(
    ("variants", "message"),
    [
        ([{"id": "holdout"}], "reserved"),
        ([{"id": "a"}, {"id": "a"}], "duplicate id 'a'"),
    ],
)
def test_bad_variants_are_refused(variants: list[dict[str, str]], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Experiment.model_validate({"variants": variants})


def test_the_campaign_tables_match_their_migration(db: Database) -> None:
    with db.engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata
        )
    assert [d for d in diff if "campaign_" in repr(d)] == []


def test_the_campaign_migration_goes_down_and_up_again(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'migrations.db'}"
    upgrade(url, "0027")
    engine = create_engine(url)
    try:
        assert "campaign_recipients" in inspect(engine).get_table_names()
        command.downgrade(alembic_config(url), "0026")
        engine.dispose()
        assert "campaign_states" not in inspect(engine).get_table_names()
        upgrade(url, "0027")
        engine.dispose()
        assert "campaign_states" in inspect(engine).get_table_names()
    finally:
        engine.dispose()
