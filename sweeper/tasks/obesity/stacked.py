"""The obesity MLP, many members trained as one in PyTorch: stacked weights and a hand-written
backward.

`StackedMLP` (any device, and the fallback where no C compiler works) runs batched matrix
products over the member dimension; parameters ``flat[M, P]``. It has the interface of the C
kernel's `sweeper.kernel.lanes.LaneMLP` (`shuffle`, `batch_loss_and_grad`, `mse`, `column`,
`unstack`), the CPU default. Every operation is per member (a matrix product of one member's
numbers, or element-wise), so no number of one member ever reaches another. All parameters
live in one buffer with the parameter axis at dim 1, so an optimizer step
(`sweeper.optim.batched`) is a handful of element-wise operations on it whatever the depth, and
per-member values (`column`) broadcast against it. The math follows PyTorch exactly
(``nn.Linear``, and through the optimizer registry ``torch.optim.SGD``, ``torch.optim.Adam``
with coupled weight decay, and SAM as in davda54/sam), so that in float64 a member reproduces
a per-trial run to rounding error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sweeper.kernel.lanes import Layers, member_rows

if TYPE_CHECKING:
    import torch


@dataclass
class _Layer:
    # Views into `flat`. The weight is stored transposed, [M, in, out] (nn.Linear's is
    # [out, in]): contiguous within a member, the forward product is 20% faster (measured).
    weight_t: torch.Tensor
    bias: torch.Tensor  # [M, 1, out]


class StackedMLP:
    """``Linear -> ReLU -> ... -> Linear -> scale * sigmoid`` for M members at once.

    Args:
        layers: per member, its list of ``(weight [out, in], bias [out])`` tensors, e.g. from
            the ``nn.Linear`` modules of a per-trial model, so both start from the same weights.
        scale: the output is ``scale * sigmoid(z)``.
    """

    def __init__(self, layers: Layers, scale: float, *, device: str = "cpu") -> None:
        import torch

        members = len(layers)
        self.members, self.scale = members, scale
        self.flat = member_rows(layers, members).to(device)
        self.grad = torch.zeros_like(self.flat)  # same layout: per layer, weight then bias
        self.layers: list[_Layer] = []
        offset = 0
        for w, _ in layers[0]:
            o, i = w.shape
            weight_t = self.flat[:, offset : offset + o * i].view(members, i, o)
            offset += o * i
            bias = self.flat[:, offset : offset + o].view(members, 1, o)
            offset += o
            self.layers.append(_Layer(weight_t, bias))

    def column(self, values: Sequence[float]) -> torch.Tensor:
        """Per-member values as ``[M, 1]``, to broadcast against `flat`."""
        import torch

        return torch.tensor(values, dtype=self.flat.dtype, device=self.flat.device).unsqueeze(1)

    def unstack(self, t: torch.Tensor) -> torch.Tensor:
        """``[M, ...]`` rows of a tensor laid out like `flat` (or a `column`), one per member."""
        return t

    def shuffle(self, x: torch.Tensor, y: torch.Tensor, perms: torch.Tensor) -> None:
        """Set this epoch's batch order: member m's batches run through ``perms[m]`` ``[M, n]``.

        Args:
            x: training inputs ``[n, in]``; y: targets ``[n]``.
        """
        self._x_epoch, self._y_epoch = x[perms], y[perms].unsqueeze(2)  # [M, n, in], [M, n, 1]

    def batch_loss_and_grad(self, start: int, stop: int) -> torch.Tensor:
        """Loss ``[M]`` and gradient of the epoch's batch ``start:stop`` (see `shuffle`)."""
        return self.loss_and_grad(self._x_epoch[:, start:stop], self._y_epoch[:, start:stop])

    def mse(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-member mean squared error on ``x [N, in]``, ``y [N]`` shared by all, float64 [M]."""
        import torch

        with torch.no_grad():
            out = self.predict(x)
        return (out - y.view(1, -1, 1)).square().mean(dim=(1, 2)).to(torch.float64).cpu()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Outputs ``[M, B, out]`` for inputs ``[M, B, in]``, and the activations backward needs."""
        import torch

        acts = [x]
        h = x
        last = len(self.layers) - 1
        for k, layer in enumerate(self.layers):
            z = torch.bmm(h, layer.weight_t).add_(layer.bias)
            h = torch.relu(z) if k < last else torch.sigmoid(z)
            acts.append(h)
        return h * self.scale, acts

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Outputs for the same inputs ``[N, in]`` shared by every member: ``[M, N, out]``."""
        return self.forward(x.unsqueeze(0).expand(self.members, -1, -1))[0]

    def loss_and_grad(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-member mean squared error ``[M]`` on a batch, and its gradient into `self.grad`.

        Args:
            x: inputs ``[M, B, in]`` (each member its own batch).
            y: targets ``[M, B, 1]``.
        """
        import torch

        out, acts = self.forward(x)
        diff = out - y
        loss = diff.square().mean(dim=(1, 2))
        batch = x.shape[1]
        # d(mean sq. error)/d out = 2 (out - y) / B; through scale * sigmoid: * scale * s (1 - s).
        s = acts[-1]
        delta = diff * ((2.0 * self.scale / batch) * s * (1.0 - s))
        grads: list[torch.Tensor] = []
        for k in range(len(self.layers) - 1, -1, -1):
            layer = self.layers[k]
            h_in = acts[k]
            # Fresh outputs, copied into `grad` by one cat: bmm writing into strided views of
            # the flat buffer takes a per-member slow path (3x slower, measured).
            grads.append(delta.sum(dim=1))
            grads.append(torch.bmm(h_in.transpose(1, 2), delta).flatten(1))
            if k > 0:
                # Back through the previous layer's ReLU (zero where its output is zero), as
                # autograd does it, in one fused op (a bool mask product costs a cast too).
                back = torch.bmm(delta, layer.weight_t.transpose(1, 2))
                delta = torch.ops.aten.threshold_backward(back, h_in, 0)
        grads.reverse()
        torch.cat(grads, dim=1, out=self.grad)
        return loss
