"""The obesity MLP: 16 -> 18 -> 18 -> 18 -> 1, then ``7 * sigmoid``; its seeded initial weights.

`build_model` is what the per-trial trainer trains and what the batched trainer stacks, so a
member of a group starts from exactly its per-trial run's weights.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sweeper.seeds import derive_seed
from sweeper.tasks.obesity.data import FEATURES

if TYPE_CHECKING:
    import torch

#: the model's output is ``OUTPUT_SCALE * sigmoid(.)``, spanning the label range (0, 7).
OUTPUT_SCALE = 7.0
HIDDEN = 18


def build_model(seed: int, dtype: str = "float32") -> torch.nn.Module:
    """Return the protocol's MLP, PyTorch default init drawn from ``derive_seed(seed, "init")``.

    ``Linear(16,18) ReLU Linear(18,18) ReLU Linear(18,18) ReLU Linear(18,1)``, then
    ``7 * sigmoid``; 1,009 parameters, on the CPU. The global torch RNG is left as it was.

    Args:
        seed: the trial's replicate seed.
        dtype: "float32" or "float64"; the weights are drawn in this dtype.
    """
    import torch
    from torch import nn

    class ScaledSigmoid(nn.Module):
        def forward(self, z: torch.Tensor) -> torch.Tensor:
            return OUTPUT_SCALE * torch.sigmoid(z)

    torch_dtype = getattr(torch, dtype)
    n_in = len(FEATURES)
    # fork_rng restores the global RNG afterwards; devices=[] because init happens on the CPU.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "init"))
        return nn.Sequential(
            nn.Linear(n_in, HIDDEN, dtype=torch_dtype),
            nn.ReLU(),
            nn.Linear(HIDDEN, HIDDEN, dtype=torch_dtype),
            nn.ReLU(),
            nn.Linear(HIDDEN, HIDDEN, dtype=torch_dtype),
            nn.ReLU(),
            nn.Linear(HIDDEN, 1, dtype=torch_dtype),
            ScaledSigmoid(),
        )
