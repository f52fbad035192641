"""What the two batched trainers of a model task share: a group's members and its judge.

`sweeper.tasks.model.batched` (``torch.func``, any model) and `sweeper.tasks.model.lanes` (the C
kernel, plain MLPs) take the same members and the same judge and end each epoch the same way
(`end_epoch`), so the pruner and the caller cannot tell them apart. Each trains a `Part` of
a group at a time: members that start at the same epoch, fresh or from their checkpoints.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sweeper.tasks.common import diverged
from sweeper.tasks.model.result import ModelResult

if TYPE_CHECKING:
    from sweeper.checkpoints import Cadence, TrialCheckpoint

#: ``(params, seed)`` of one member.
Member = tuple[Mapping[str, Any], int]
#: ``judge(epoch, values) -> members to stop``: `values` maps the index of each member still
#: training to its curve values of `epoch` (``train_loss``, ``val_loss``, ``val_<metric>``),
#: as a per-trial run reports them after that epoch.
Judge = Callable[[int, Mapping[int, dict[str, float]]], Collection[int]]


def end_epoch(
    epoch: int,
    alive: Sequence[int],
    train_loss: Sequence[float],
    val: Sequence[dict[str, float]] | None,
    curves: Sequence[dict[str, list[float]]],
    judge: Judge | None,
) -> dict[int, ModelResult | str | None]:
    """Record epoch `epoch` of the members `alive` (their training losses and validation
    scores, row by row) in `curves`; the members that end now: those whose training loss is
    not finite (`diverged`), then those the judge stops among the others (None)."""
    ended: dict[int, ModelResult | str | None] = {}
    values: dict[int, dict[str, float]] = {}
    for r, (i, value) in enumerate(zip(alive, train_loss, strict=True)):
        curves[i]["train_loss"].append(value)
        values[i] = {"train_loss": value}
        if not math.isfinite(value):
            ended[i] = diverged("train loss", value, f"at epoch {epoch}")
        if val is not None:
            for name, score in val[r].items():
                curves[i].setdefault(name, []).append(score)
            values[i].update(val[r])
    if judge is not None:
        going = {i: v for i, v in values.items() if i not in ended}
        ended.update((i, None) for i in judge(epoch, going) if i in going)
    return ended


class Part:
    """The checkpoints of the members of a group's part (members that start at one epoch):
    the `states` they resume from (all None: fresh) and the `ckpts` they save to (empty:
    they keep none), in member order."""

    def __init__(
        self,
        states: Sequence[dict[str, Any] | None],
        ckpts: Sequence[TrialCheckpoint] = (),
        label: str = "",
    ) -> None:
        self.states, self.ckpts, self.label = states, ckpts, label

    @property
    def start(self) -> int:
        """The epoch the members saved after (0: fresh)."""
        first = self.states[0] if self.states else None
        return int(first["epoch"]) if first is not None else 0

    def resumed(self) -> list[dict[str, Any]]:
        """The members' states (a part that starts after epoch 0 has one for each)."""
        live = [s for s in self.states if s is not None]
        if len(live) != len(self.states):
            raise ValueError("a part resumed from checkpoints needs every member's state")
        return live

    def cadence(self) -> Cadence | None:
        """When the part saves next (None: it keeps no checkpoints)."""
        if not self.ckpts:
            return None
        return self.ckpts[0].policy.cadence(len(self.ckpts), self.label)

    def save(self, j: int, state: Mapping[str, Any]) -> None:
        """Save member `j`'s state (`sweeper.tasks.model.checkpoints.member_state`)."""
        self.ckpts[j].save(state)
