"""What the kernel's members compute, by name: the codes of ``activations.h``'s enums.

`LaneArch` names a stacked MLP's hidden activations, head and loss; the tables turn each name
into the number ``stacked_mlp.c`` reads (`sweeper.kernel.lanes.LaneMLP` passes them).
A new activation is one line here and one case in ``activations.h``.
"""

from __future__ import annotations

from dataclasses import dataclass

#: what ``activations.h`` computes, by name -> the kernel's code: hidden activations (torch's
#: ReLU, Tanh, Sigmoid, GELU(approximate="none")), output heads and losses.
LANE_ACTIVATIONS = {"relu": 0, "tanh": 1, "sigmoid": 2, "gelu": 3}
LANE_HEADS = {"identity": 0, "scaled_sigmoid": 1}
LANE_LOSSES = {"mse": 0, "cross_entropy": 1}


@dataclass(frozen=True)
class LaneArch:
    """What every member of a `LaneMLP` computes (the default: the obesity MLP).

    Attributes:
        activations: per hidden layer, a name in `LANE_ACTIVATIONS` (None: ReLU for all).
        head: a name in `LANE_HEADS`: the outputs as they are, or ``scale * sigmoid``.
        loss: a name in `LANE_LOSSES`: MSE (targets ``[rows, outputs]``, mean over both) or
            cross-entropy (class indices as numbers ``[rows]``, mean over rows).
    """

    activations: tuple[str, ...] | None = None
    head: str = "scaled_sigmoid"
    loss: str = "mse"


#: the obesity MLP's: ReLU hidden layers, one output through ``scale * sigmoid``, MSE.
OBESITY = LaneArch()
