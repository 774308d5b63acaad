"""The margin's arithmetic: credits against each attempt's cost, exact, by model, channel
or account; a channel without a price is counted, never guessed."""

from __future__ import annotations

import pytest

from pixelrelay.errors import ApiError, E
from pixelrelay.v1 import common_pb2
from pixelrelay_gateway.core.margin import TaskCosts, group, margin, total


def attempt(channel: str, outcome: str, cost: int = 0, priced: bool = True) -> common_pb2.Attempt:
    return common_pb2.Attempt(channel=channel, outcome=outcome, cost_micros=cost, priced=priced)


TASKS = [
    # failed over from a to b: b delivered (cost 300 micros), charged 7 credits
    TaskCosts(
        "acct_1", "m1", 7, [attempt("a", "upstream_unavailable"), attempt("b", "ok", 300)], True
    ),
    # delivered by a: 186 credits against 170,000 micros
    TaskCosts("acct_2", "m2", 186, [attempt("a", "ok", 170_000)], True),
    # failed everywhere: nothing charged, a cost of 50 on a (an upstream that charged anyway)
    TaskCosts("acct_1", "m2", 0, [attempt("a", "upstream_no_answer", 50)], False),
    # delivered by c, which has no price
    TaskCosts("acct_2", "m1", 14, [attempt("c", "ok", 0, priced=False)], True),
]


def lines(group_by: str) -> dict[str, tuple[int, int, int, int, int]]:
    return {
        line.key: (
            line.tasks,
            line.credits_charged,
            line.cost_micros,
            line.margin_micros,
            line.unpriced_tasks,
        )
        for line in margin(TASKS, group_by)
    }


def test_by_model_each_task_with_all_its_attempts() -> None:
    assert lines("model") == {
        "m1": (2, 21, 300, 21_000 - 300, 1),
        "m2": (1, 186, 170_050, 186_000 - 170_050, 0),
    }


def test_by_channel_credits_go_to_who_delivered_and_costs_to_who_charged() -> None:
    assert lines("channel") == {
        "a": (1, 186, 170_050, 186_000 - 170_050, 0),
        "b": (1, 7, 300, 7_000 - 300, 0),
        "c": (1, 14, 0, 14_000, 1),
    }


def test_by_account_and_the_total_agree() -> None:
    by_account = margin(TASKS, "account")
    assert [(line.key, line.credits_charged) for line in by_account] == [
        ("acct_1", 7),
        ("acct_2", 200),
    ]
    whole = total(by_account)
    assert (whole.tasks, whole.credits_charged, whole.cost_micros, whole.unpriced_tasks) == (
        3,
        207,
        170_350,
        1,
    )
    assert whole.margin_micros == whole.revenue_micros - whole.cost_micros == 207_000 - 170_350
    for group_by in ("model", "channel"):
        assert total(margin(TASKS, group_by)) == whole


def test_only_the_known_groupings() -> None:
    assert group("") == "model"
    with pytest.raises(ApiError) as caught:
        group("key")
    assert (caught.value.kind, caught.value.param) == (E.INVALID_PARAMETER, "group_by")
