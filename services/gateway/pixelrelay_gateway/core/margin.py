"""The operator's margin: what the upstreams cost (each attempt's reported usage at its
channel's configured price, recorded by the dispatcher) against the credits charged, for
the tasks made in a period. Exact integers: millionths of a dollar, 1 credit = 1,000."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from pixelrelay.errors import ApiError, E
from pixelrelay.v1 import admin_pb2, common_pb2

GROUPS = ("model", "channel", "account")
MICROS_PER_CREDIT = 1_000


@dataclass(frozen=True)
class TaskCosts:
    """What margin reads of one task."""

    account_id: str
    model: str
    credits_charged: int
    attempts: list[common_pb2.Attempt]
    completed: bool


@dataclass
class _Line:
    tasks: int = 0
    credits: int = 0
    cost_micros: int = 0
    unpriced: int = 0

    def to_proto(self, key: str) -> admin_pb2.MarginLine:
        revenue = self.credits * MICROS_PER_CREDIT
        return admin_pb2.MarginLine(
            key=key,
            tasks=self.tasks,
            credits_charged=self.credits,
            revenue_micros=revenue,
            cost_micros=self.cost_micros,
            margin_micros=revenue - self.cost_micros,
            unpriced_tasks=self.unpriced,
        )


@dataclass
class _Report:
    lines: dict[str, _Line] = field(default_factory=dict)

    def line(self, key: str) -> _Line:
        return self.lines.setdefault(key, _Line())


def group(group_by: str) -> str:
    chosen = group_by or "model"
    if chosen not in GROUPS:
        raise ApiError(
            E.INVALID_PARAMETER, f"group_by must be one of: {', '.join(GROUPS)}", param="group_by"
        )
    return chosen


def margin(tasks: Iterable[TaskCosts], group_by: str) -> list[admin_pb2.MarginLine]:
    """One line per key, sorted by it. By channel, a task's credits go to the channel that
    delivered it and each attempt's cost to its own channel; otherwise a task's credits
    and all its attempts' costs go to its model or account."""
    report = _Report()
    for task in tasks:
        delivered = next((a for a in task.attempts if a.outcome == "ok"), None)
        if group_by == "channel":
            for attempt in task.attempts:
                report.line(attempt.channel).cost_micros += attempt.cost_micros
            owner = report.line(delivered.channel) if delivered else None
        else:
            owner = report.line(task.account_id if group_by == "account" else task.model)
            owner.cost_micros += sum(a.cost_micros for a in task.attempts)
        if owner is not None and task.completed:
            owner.tasks += 1
            owner.credits += task.credits_charged
            if delivered is not None and not delivered.priced:
                owner.unpriced += 1
    return [report.lines[key].to_proto(key) for key in sorted(report.lines)]


def total(lines: list[admin_pb2.MarginLine]) -> admin_pb2.MarginLine:
    whole = _Line(
        tasks=sum(line.tasks for line in lines),
        credits=sum(line.credits_charged for line in lines),
        cost_micros=sum(line.cost_micros for line in lines),
        unpriced=sum(line.unpriced_tasks for line in lines),
    )
    return whole.to_proto("total")
