"""Many small MLPs trained at once on the C kernel (`sweeper.kernel`), one member per SIMD lane.

`LaneMLP` holds a group's parameters as ``flat[blocks, P, lanes]`` and runs forward and
backward in one call of the kernel; with a `LaneOptimizer` (SGD, Adam or AdamW, with or
without SAM) a whole epoch is one call (`LaneMLP.train_epoch`): SAM's second pass and the
update run inside the kernel, on each block while it is in cache. Its `LaneArch` says what the
members compute: the obesity task's MLP (ReLU, ``scale * sigmoid``, MSE) by default, or a model
task's plain MLP (`sweeper.tasks.model.lanes`). No number of one member ever reaches another (a
member that diverges to NaN leaves the others untouched), and the math follows PyTorch exactly
(``nn.Linear``, ``torch.optim.SGD``, ``Adam`` with coupled weight decay, ``AdamW``, SAM as in
davda54/sam), so that in float64 a member reproduces a per-trial run to rounding error.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from typing import TYPE_CHECKING

from sweeper.kernel.arch import (
    LANE_ACTIVATIONS,
    LANE_HEADS,
    LANE_LOSSES,
    OBESITY,
    LaneArch,
)

if TYPE_CHECKING:
    import torch

    from sweeper.kernel import Kernel

#: per member, per layer ``(weight [out, in], bias [out])``, as ``nn.Linear`` holds them.
Layers = Sequence[Sequence[tuple["torch.Tensor", "torch.Tensor"]]]


def member_rows(layers: Layers, rows: int) -> torch.Tensor:
    """``[rows, P]``: member m's parameters in row m (per layer weight transposed to ``[in,
    out]``, then bias), zeros in rows past the last member. Both nets' parameter layout."""
    import torch

    flat = [torch.cat([torch.cat([w.t().flatten(), b]) for w, b in member]) for member in layers]
    out = torch.zeros(rows, len(flat[0]), dtype=flat[0].dtype)
    out[: len(flat)] = torch.stack(flat)
    return out


class LaneMLP:
    """The members of a `StackedMLP`, one per SIMD lane, trained by the C kernel (CPU only).

    ``flat[blocks, P, lanes]`` holds member ``m`` at ``flat[m // lanes, :, m % lanes]``; lanes
    past the last member (when M is not a multiple of `lanes`) hold zeros, learn with rate 0
    (their `column` values are 0) and are never read back.

    Args:
        layers: as for `StackedMLP`; float32 or float64.
        scale: the factor of a ``scale * sigmoid`` head (unused by an identity head).
        kernel: `sweeper.kernel.load` for the layers' precision.
        arch: the members' activations, head and loss.

    Raises:
        KeyError: `arch` names an activation, head or loss the kernel lacks.
        ValueError: `arch` gives a number of activations other than hidden layers.
    """

    def __init__(
        self, layers: Layers, scale: float, kernel: Kernel, arch: LaneArch = OBESITY
    ) -> None:
        widths = [layers[0][0][0].shape[1]] + [w.shape[0] for w, _ in layers[0]]
        lanes = kernel.lanes
        rows = member_rows(layers, -(-len(layers) // lanes) * lanes)
        self._setup(rows, len(layers), widths, scale, kernel, arch)

    def _setup(
        self,
        rows: torch.Tensor,
        size: int,
        widths: Sequence[int],
        scale: float,
        kernel: Kernel,
        arch: LaneArch,
    ) -> None:
        """Members from ``rows [blocks * lanes, P]`` (`_member_rows`'s layout), `size` real."""
        import torch

        self.kernel, self.scale, self.arch = kernel, scale, arch
        self.size = size  # members
        lanes = kernel.lanes
        blocks = len(rows) // lanes
        if rows.dtype != (torch.float32 if kernel.real == "float" else torch.float64):
            raise TypeError(f"a {kernel.real} kernel cannot train {rows.dtype} parameters")
        self.flat = rows.view(blocks, lanes, -1).transpose(1, 2).contiguous()
        self.grad = torch.zeros_like(self.flat)
        self.widths = list(widths)
        acts = arch.activations or ("relu",) * (len(widths) - 2)
        if len(acts) != len(widths) - 2:
            raise ValueError(f"{len(widths) - 2} hidden layers but {len(acts)} activations")
        codes = [LANE_ACTIVATIONS[a] for a in acts]
        self._head, self._loss_kind = LANE_HEADS[arch.head], LANE_LOSSES[arch.loss]
        self._acts = (ctypes.c_int64 * max(1, len(codes)))(*codes)
        self._widths = (ctypes.c_int64 * len(widths))(*widths)
        self._depth = len(widths) - 1
        self._loss = torch.empty(blocks * lanes, dtype=self.flat.dtype)
        self._work = torch.empty(0, dtype=self.flat.dtype)

    def select(self, members: Sequence[int]) -> LaneMLP:
        """A new net of these members only (in this order), repacked into the fewest blocks."""
        lanes = self.kernel.lanes
        rows = self.unstack(self.flat)[list(members)]
        padded = rows.new_zeros(-(-len(rows) // lanes) * lanes, rows.shape[1])
        padded[: len(rows)] = rows
        net = LaneMLP.__new__(LaneMLP)
        net._setup(padded, len(rows), self.widths, self.scale, self.kernel, self.arch)
        return net

    def restack(self, rows: torch.Tensor, blocks: int | None = None) -> torch.Tensor:
        """The inverse of `unstack`: ``[M, P]`` rows laid out like `flat` (zeros for padding)
        in `blocks` blocks (default: as many as `flat` has)."""
        lanes = self.kernel.lanes
        blocks = self.flat.shape[0] if blocks is None else blocks
        padded = rows.new_zeros(blocks * lanes, rows.shape[1])
        padded[: len(rows)] = rows
        return padded.view(blocks, lanes, -1).transpose(1, 2).contiguous()

    def column(self, values: Sequence[float]) -> torch.Tensor:
        """Per-member values as ``[blocks, 1, lanes]`` (0 for padding), to broadcast on `flat`."""
        import torch

        blocks, _, lanes = self.flat.shape
        out = torch.zeros(blocks * lanes, dtype=self.flat.dtype)
        out[: self.size] = torch.tensor(values, dtype=self.flat.dtype)
        return out.view(blocks, 1, lanes)

    def unstack(self, t: torch.Tensor) -> torch.Tensor:
        """``[M, ...]``: one row per member of a tensor laid out like `flat` or a `column`."""
        blocks, size, lanes = t.shape
        return t.transpose(1, 2).reshape(blocks * lanes, size)[: self.size]

    def shuffle(self, x: torch.Tensor, y: torch.Tensor, perms: torch.Tensor) -> None:
        """Set this epoch's batch order, as `StackedMLP.shuffle`."""
        import torch

        if x.dtype != self.flat.dtype or y.dtype != self.flat.dtype:
            raise TypeError(f"inputs must be {self.flat.dtype} (got {x.dtype}, {y.dtype})")
        blocks, _, lanes = self.flat.shape
        idx = torch.zeros(blocks * lanes, perms.shape[1], dtype=torch.int64)
        idx[: self.size] = perms
        self._x, self._y, self._idx = x.contiguous(), y.contiguous(), idx

    def batch_loss_and_grad(self, start: int, stop: int) -> torch.Tensor:
        """Loss ``[M]`` and gradient (into `grad`) of the epoch's batch ``start:stop``."""
        offset = start * self._idx.element_size()
        self._call(self._x, self._y, self._idx.data_ptr() + offset, stop - start, grad=True)
        return self._loss[: self.size].clone()  # the buffer is the next call's

    def mse(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-member mean squared error on ``x [N, in]``, ``y [N]`` shared by all, float64 [M]."""
        import torch

        self._call(x.contiguous(), y.contiguous(), None, len(x), grad=False)
        return self._loss[: self.size].to(torch.float64).clone()

    def predict(self, x: torch.Tensor, chunk: int = 64) -> torch.Tensor:
        """Every member's outputs (after the head) on the same rows ``x [N, in]``:
        ``[M, N, outputs]``, computed `chunk` rows at a time."""
        import torch

        if x.dtype != self.flat.dtype:
            raise TypeError(f"inputs must be {self.flat.dtype} (got {x.dtype})")
        x = x.contiguous()
        blocks, size, lanes = self.flat.shape
        chunk = max(1, min(chunk, len(x)))
        self._reserve(chunk)
        out = torch.empty(blocks * lanes, len(x), self.widths[-1], dtype=self.flat.dtype)
        self.kernel.predict(
            blocks,
            self._depth,
            self._widths,
            self._acts,
            self._head,
            self.scale,
            size,
            self.flat.data_ptr(),
            x.data_ptr(),
            len(x),
            chunk,
            out.data_ptr(),
            self._work.data_ptr(),
        )
        return out[: self.size]

    def _call(
        self, x: torch.Tensor, y: torch.Tensor, idx: int | None, batch: int, *, grad: bool
    ) -> None:
        if x.dtype != self.flat.dtype or y.dtype != self.flat.dtype:
            raise TypeError(f"inputs must be {self.flat.dtype} (got {x.dtype}, {y.dtype})")
        self._reserve(batch)
        blocks, size, _ = self.flat.shape
        stride = self._idx.shape[1] if idx is not None else 0
        self.kernel.loss_grad(
            blocks,
            self._depth,
            self._widths,
            self._acts,
            self._head,
            self._loss_kind,
            size,
            self.flat.data_ptr(),
            self.grad.data_ptr() if grad else None,
            x.data_ptr(),
            y.data_ptr(),
            idx,
            stride,
            batch,
            self.scale,
            self._loss.data_ptr(),
            self._work.data_ptr(),
        )

    def train_epoch(self, opt: LaneOptimizer, batch: int) -> torch.Tensor:
        """One epoch in the order `shuffle` set, mini-batches of `batch` rows (the last one
        shorter), each step fused in the kernel: gradient, SAM's second pass when `opt` has
        one, and `opt`'s update. Returns per member the sum over mini-batches of loss times
        rows ``[M]`` (in the parameters' dtype, accumulated in batch order)."""
        import torch

        blocks, size, lanes = self.flat.shape
        n_rows = self._idx.shape[1]
        if n_rows >= 2**31:
            raise ValueError(f"the kernel numbers rows in int32 (got {n_rows} rows)")
        # Row numbers [blocks, rows, lanes]: one vector load gives a step's rows for all lanes.
        rows = self._idx.view(blocks, lanes, n_rows).transpose(1, 2).to(torch.int32).contiguous()
        self._reserve(batch)
        loss_sum = torch.empty(blocks * self.kernel.lanes, dtype=self.flat.dtype)
        state_a, state_b = opt.buffers()
        hyper = opt.hyper()  # held here: the kernel reads it through a bare pointer
        self.kernel.train_epoch(
            blocks,
            self._depth,
            self._widths,
            self._acts,
            self._head,
            self._loss_kind,
            size,
            self.flat.data_ptr(),
            state_a.data_ptr() if state_a is not None else None,
            state_b.data_ptr() if state_b is not None else None,
            self._x.data_ptr(),
            self._y.data_ptr(),
            rows.data_ptr(),
            n_rows,
            batch,
            self.scale,
            opt.update,
            hyper.data_ptr(),
            opt.sam,
            opt.steps,
            loss_sum.data_ptr(),
            self._work.data_ptr(),
        )
        opt.steps += -(-n_rows // batch)
        return loss_sum[: self.size]

    def _reserve(self, batch: int) -> None:
        """Make the scratch buffer large enough for mini-batches of `batch` rows."""
        import torch

        size = self.flat.shape[1]
        need = int(self.kernel.work_size(self._depth, self._widths, size, batch))
        if self._work.numel() < need:
            self._work = torch.empty(need, dtype=self.flat.dtype)


#: the updates ``stacked_mlp.c`` implements, by optimizer registry name -> the kernel's code.
LANE_UPDATES = {"sgd": 0, "adam": 1, "adamw": 2}
#: the updates whose state is Adam's two moments and step count.
_ADAM_LIKE = (LANE_UPDATES["adam"], LANE_UPDATES["adamw"])


class LaneOptimizer:
    """A registered optimizer, and SAM, run inside `LaneMLP.train_epoch`.

    The kernel's update is ``torch.optim.SGD`` (momentum, dampening 0, coupled weight decay),
    ``torch.optim.Adam`` (betas (0.9, 0.999), eps 1e-8, coupled weight decay) or
    ``torch.optim.AdamW`` (the same, decoupled weight decay), as
    `sweeper.optim.batched.BatchedOptimizer` steps them; its state has the same names and
    layout (``buf``; ``exp_avg``, ``exp_avg_sq``, ``step``), so checkpoints read alike.
    `lr` may be changed between epochs (schedules) by assigning a new column.

    Args:
        net: the group.
        name: an optimizer in `LANE_UPDATES`.
        lr, weight_decay, momentum, rho: per-member columns of `net`; rho > 0 means SAM.

    Raises:
        KeyError: the kernel has no update for `name` (step it with `BatchedOptimizer`).
    """

    def __init__(
        self,
        net: LaneMLP,
        name: str,
        lr: torch.Tensor,
        weight_decay: torch.Tensor,
        momentum: torch.Tensor,
        rho: torch.Tensor,
    ) -> None:
        import torch

        self.update = LANE_UPDATES[name]
        self.lr, self.weight_decay, self.momentum, self.rho = lr, weight_decay, momentum, rho
        self.sam = int(bool((rho != 0).any()))
        self.steps = 0
        flat = net.flat
        self.state_a: torch.Tensor | None = None
        self.state_b: torch.Tensor | None = None
        if self.update in _ADAM_LIKE:
            self.state_a, self.state_b = torch.zeros_like(flat), torch.zeros_like(flat)
        elif bool((momentum != 0).any()):
            self.state_a = torch.zeros_like(flat)

    def hyper(self) -> torch.Tensor:
        """``[blocks, 4, lanes]``: lr, weight decay, momentum and rho, as the kernel reads them."""
        import torch

        return torch.cat([self.lr, self.weight_decay, self.momentum, self.rho], dim=1)

    def buffers(self) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The state the kernel updates in place (SGD: the momentum buffer or None; Adam: the
        two moments)."""
        return self.state_a, self.state_b

    def state(self) -> dict[str, torch.Tensor]:
        """As `BatchedOptimizer.state`: tensors laid out like `flat`, or 0-d."""
        import torch

        if self.update in _ADAM_LIKE:
            assert self.state_a is not None and self.state_b is not None
            step = torch.tensor(float(self.steps), dtype=self.state_a.dtype)
            return {"exp_avg": self.state_a, "exp_avg_sq": self.state_b, "step": step}
        return {} if self.state_a is None or self.steps == 0 else {"buf": self.state_a}

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        """Continue from a `state` (of this class or `BatchedOptimizer`, same layout)."""
        if self.update in _ADAM_LIKE:
            assert self.state_a is not None and self.state_b is not None
            self.state_a.copy_(state["exp_avg"])
            self.state_b.copy_(state["exp_avg_sq"])
            self.steps = int(state["step"])
        elif "buf" in state and self.state_a is not None:
            self.state_a.copy_(state["buf"])
            self.steps = 1  # any count past 0: the buffer has started
