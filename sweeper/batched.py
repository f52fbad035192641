"""Many small MLPs trained as one: stacked weights, hand-written backward, batched optimizers.

Member ``m`` of a `StackedMLP` is an independent model: every operation below is either a
batched matrix product over the member dimension or element-wise, so no number of one member
ever reaches another (a member that diverges to NaN leaves the others untouched).

All parameters live in one flat buffer ``flat[M, P]`` with per-layer views into it, so an
optimizer step is a handful of element-wise operations on ``[M, P]`` whatever the depth, and
gradients land in a matching ``grad[M, P]``. The math follows PyTorch exactly (``nn.Linear``,
``torch.optim.SGD``, ``torch.optim.Adam`` with coupled weight decay, and SAM as in
davda54/sam), so that in float64 a member reproduces a per-trial run to rounding error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

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

    def __init__(
        self,
        layers: Sequence[Sequence[tuple[torch.Tensor, torch.Tensor]]],
        scale: float,
        *,
        device: str = "cpu",
    ) -> None:
        import torch

        members = len(layers)
        shapes = [(w.shape[0], w.shape[1]) for w, _ in layers[0]]
        size = sum(o * i + o for o, i in shapes)
        dtype = layers[0][0][0].dtype
        self.members, self.scale = members, scale
        self.flat = torch.empty(members, size, dtype=dtype, device=device)
        self.grad = torch.zeros_like(self.flat)  # same layout: per layer, weight then bias
        self.layers: list[_Layer] = []
        offset = 0
        for k, (o, i) in enumerate(shapes):
            w = self.flat[:, offset : offset + o * i].view(members, i, o)
            offset += o * i
            b = self.flat[:, offset : offset + o].view(members, 1, o)
            offset += o
            w.copy_(torch.stack([member[k][0].t() for member in layers]))
            b.copy_(torch.stack([member[k][1] for member in layers]).unsqueeze(1))
            self.layers.append(_Layer(w, b))

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


class BatchedOptimizer:
    """SGD or Adam over ``flat[M, P]`` with per-member learning rate and weight decay.

    Matches ``torch.optim.SGD(lr, momentum, weight_decay)`` (dampening 0, no Nesterov) and
    ``torch.optim.Adam(lr, betas=(0.9, 0.999), eps=1e-8, weight_decay)`` (coupled L2) step for
    step. `lr` may be changed between steps (schedules) by assigning a new ``[M, 1]`` tensor.
    """

    def __init__(
        self,
        name: str,
        flat: torch.Tensor,
        lr: torch.Tensor,
        weight_decay: torch.Tensor,
        momentum: torch.Tensor | None = None,
    ) -> None:
        import torch

        self.name, self.flat = name, flat
        self.lr, self.weight_decay = lr, weight_decay  # [M, 1]
        self.momentum = momentum
        self.steps = 0
        self.use_wd = bool((weight_decay != 0).any())
        if name == "adam":
            self.exp_avg = torch.zeros_like(flat)
            self.exp_avg_sq = torch.zeros_like(flat)
            self.scratch = torch.zeros_like(flat)
            self.step_count = torch.zeros((), dtype=flat.dtype)
        elif name == "sgd":
            self.use_momentum = momentum is not None and bool((momentum != 0).any())
            self.buf: torch.Tensor | None = None
        else:
            raise ValueError(f"unknown batched optimizer {name!r}")

    def step(self, grad: torch.Tensor) -> None:
        """One step with gradient `grad` ``[M, P]`` (taken wherever SAM says), applied at `flat`."""
        import torch

        self.steps += 1
        g = grad + self.weight_decay * self.flat if self.use_wd else grad
        if self.name == "sgd":
            if self.use_momentum:
                assert self.momentum is not None
                if self.buf is None:
                    self.buf = g.clone()
                else:
                    self.buf.mul_(self.momentum).add_(g)
                g = self.buf
            self.flat.sub_(self.lr * g)
            return
        # Adam through PyTorch's own fused kernel (the one the per-trial runs use), applied
        # with lr = 1 to a zeroed scratch tensor, which then holds -m_hat / (sqrt(v_hat) + eps);
        # the per-member learning rate scales it. Weight decay (coupled) is already in `g`.
        # One fused pass instead of a dozen element-wise ones: 2.5x faster (measured).
        self.step_count += 1
        self.scratch.zero_()
        torch._fused_adam_(
            [self.scratch],
            [g],
            [self.exp_avg],
            [self.exp_avg_sq],
            [],
            [self.step_count],
            amsgrad=False,
            lr=1.0,
            beta1=0.9,
            beta2=0.999,
            weight_decay=0.0,
            eps=1e-8,
            maximize=False,
        )
        self.flat.addcmul_(self.lr, self.scratch)


def sam_ascent(grad: torch.Tensor, rho: torch.Tensor) -> torch.Tensor:
    """SAM's first step: ``e = rho * g / (||g|| + 1e-12)`` with one L2 norm per member.

    Args:
        grad: ``[M, P]`` gradients at w.
        rho: ``[M, 1]`` neighbourhood sizes (0: no perturbation).
    Returns:
        ``e`` ``[M, P]``, to add to the weights before the second gradient.
    """
    norm = grad.norm(dim=1, keepdim=True)
    ascent: torch.Tensor = grad * (rho / (norm + 1e-12))
    return ascent
