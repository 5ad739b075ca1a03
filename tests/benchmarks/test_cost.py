"""Tests of diffgym.agents.cost: the cost ledger and the stopwatch."""

from __future__ import annotations

import json
import math
import time

import pytest

from diffgym.agents.cost import COST_CATEGORIES, Cost, Stopwatch


def test_costs_add_by_field_and_category():
    a = Cost(nfe=35, samples=1, seconds={"rollouts": 1.0, "metrics": 0.5})
    b = Cost(nfe=70, samples=2, seconds={"rollouts": 2.0, "discriminator": 0.25})
    c = a + b
    assert (c.nfe, c.samples) == (105, 3)
    assert c.seconds == {"rollouts": 3.0, "discriminator": 0.25, "metrics": 0.5}
    assert c.total_seconds == pytest.approx(3.75)
    assert c.nfe_per_sample == 35.0
    assert sum([a, b]) == c  # sum() starts from 0
    assert sum([], Cost()) == Cost()
    assert a.add_seconds("policy_update", 2.0).seconds["policy_update"] == 2.0
    assert a.seconds == {"rollouts": 1.0, "metrics": 0.5}  # values are not mutated


def test_seconds_follow_the_canonical_category_order():
    c = Cost(seconds={"metrics": 1.0, "rollouts": 2.0})
    assert list(c.seconds) == [k for k in COST_CATEGORIES if k in c.seconds]


def test_cost_json_round_trip():
    c = Cost(nfe=12345, samples=100, seconds={"grid_point": 1.5, "metrics": 0.25})
    data = json.loads(json.dumps(c.to_dict()))
    assert data["total_seconds"] == pytest.approx(1.75)
    assert Cost.from_dict(data) == c


def test_empty_cost():
    c = Cost()
    assert (c.nfe, c.samples, c.total_seconds) == (0, 0, 0.0)
    assert math.isnan(c.nfe_per_sample)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"nfe": -1}, r"Cost.nfe must be an integer >= 0, got -1"),
        ({"samples": 1.5}, r"Cost.samples must be an integer >= 0, got 1.5"),
        ({"nfe": True}, r"Cost.nfe must be an integer"),
        ({"seconds": {"training": 1.0}}, r"unknown cost category 'training'; allowed: rollouts"),
        ({"seconds": {"rollouts": -1.0}}, r"seconds\['rollouts'\] must be finite and >= 0"),
        ({"seconds": {"rollouts": math.inf}}, r"must be finite"),
    ],
)
def test_bad_costs_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Cost(**kwargs)


def test_adding_a_non_cost_is_a_type_error():
    with pytest.raises(TypeError):
        Cost() + 1.0  # noqa: B018


def test_stopwatch_measures_the_block():
    with Stopwatch() as sw:
        time.sleep(0.02)
        inside = sw.seconds
    assert inside >= 0.02
    assert sw.seconds >= inside
    frozen = sw.seconds
    time.sleep(0.01)
    assert sw.seconds == frozen  # stopped on exit
