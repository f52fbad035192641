"""The kernel's vector widths agree, and its fused epoch is PyTorch's step, SAM and optimizer.

Every lane runs the same instructions whatever the vector width, so the AVX-512 and AVX2 builds
(both with fused multiply-add) must give bit for bit the same numbers; the portable build has
no fused multiply-add and agrees to rounding. The fused epoch (`LaneMLP.train_epoch`: SAM's
second pass and the SGD / Adam update inside the kernel) must follow, step for step, the path
that calls the kernel once per pass and steps PyTorch's batched optimizer.
"""

from __future__ import annotations

import logging

import pytest
import torch

from sweeper import kernel as native
from sweeper.kernel.lanes import LaneMLP, LaneOptimizer
from sweeper.optim.batched import BatchedOptimizer
from sweeper.optim.sam import sam_ascent
from sweeper.tasks.obesity.model import build_model

ROWS = 200
MEMBERS = 6  # not a multiple of any lane count: the last block is padded


def _kernel(real: str, isa: str) -> native.Kernel:
    if isa not in native.available_isas():
        pytest.skip(f"this CPU does not run {isa}")
    kernel = native.load(real, isa)
    if kernel is None:
        pytest.skip("the C kernel does not compile here (no working C compiler)")
    return kernel


def _net(kernel: native.Kernel) -> LaneMLP:
    dtype = torch.float32 if kernel.real == "float" else torch.float64
    layers = []
    for seed in range(MEMBERS):
        model = build_model(seed, "float64").to(dtype)
        linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
        layers.append([(m.weight.detach().clone(), m.bias.detach().clone()) for m in linears])
    return LaneMLP(layers, 7.0, kernel)


def _data(dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(ROWS, 16, generator=gen, dtype=dtype) * 3
    y = torch.rand(ROWS, generator=gen, dtype=dtype) * 7
    perms = torch.stack([torch.randperm(ROWS, generator=gen) for _ in range(MEMBERS)])
    return x, y, perms


# (optimizer, weight decay, momentum, rho) per member pattern
SETTINGS = {
    "sgd": ("sgd", [0.0, 1e-3], [0.0, 0.0], 0.0),
    "sgd-momentum": ("sgd", [0.0, 1e-2], [0.9, 0.5], 0.0),
    "adam": ("adam", [0.0, 1e-3], [0.0, 0.0], 0.0),
    "adam-sam": ("adam", [1e-2, 0.0], [0.0, 0.0], 0.05),
    "sgd-sam": ("sgd", [1e-3, 0.0], [0.0, 0.0], 0.1),
}
LRS = [1e-3, 3e-3, 2e-2, 1e-2, 1e-3, 5e-3]


def _columns(net: LaneMLP, setting: str) -> tuple[str, list[torch.Tensor]]:
    name, wd, mom, rho = SETTINGS[setting]
    values = [LRS, [wd[i % 2] for i in range(MEMBERS)], [mom[i % 2] for i in range(MEMBERS)]]
    values.append([rho] * MEMBERS)
    return name, [net.column(v) for v in values]


def _fused(
    kernel: native.Kernel, setting: str, epochs: int = 2
) -> tuple[LaneMLP, list[torch.Tensor]]:
    net = _net(kernel)
    x, y, perms = _data(net.flat.dtype)
    name, (lr, wd, mom, rho) = _columns(net, setting)
    opt = LaneOptimizer(net, name, lr, wd, mom, rho)
    losses = []
    for _ in range(epochs):
        net.shuffle(x, y, perms)
        losses.append(net.train_epoch(opt, 32).clone())
    return net, losses


def _stepped(
    kernel: native.Kernel, setting: str, epochs: int = 2
) -> tuple[LaneMLP, list[torch.Tensor]]:
    """The same epochs as `_fused`, a kernel call per pass and PyTorch's optimizer and SAM."""
    net = _net(kernel)
    x, y, perms = _data(net.flat.dtype)
    name, (lr, wd, mom, rho) = _columns(net, setting)
    opt = BatchedOptimizer(name, net.flat, lr, wd, mom)
    losses = []
    for _ in range(epochs):
        net.shuffle(x, y, perms)
        total = torch.zeros(MEMBERS, dtype=net.flat.dtype)
        for start in range(0, ROWS, 32):
            stop = min(start + 32, ROWS)
            loss = net.batch_loss_and_grad(start, stop)
            if bool((rho != 0).any()):
                saved = net.flat.clone()
                net.flat.add_(sam_ascent(net.grad, rho))
                net.batch_loss_and_grad(start, stop)
                net.flat.copy_(saved)
            opt.step(net.grad)
            total += loss * (stop - start)
        losses.append(total)
    return net, losses


@pytest.mark.parametrize("real", ["float", "double"])
@pytest.mark.parametrize("setting", sorted(SETTINGS))
def test_avx512_and_avx2_train_bit_for_bit_alike(real: str, setting: str) -> None:
    wide, narrow = _fused(_kernel(real, "avx512"), setting), _fused(_kernel(real, "avx2"), setting)
    assert torch.equal(wide[0].unstack(wide[0].flat), narrow[0].unstack(narrow[0].flat))
    for a, b in zip(wide[1], narrow[1], strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize(("real", "rtol"), [("float", 1e-4), ("double", 1e-12)])
@pytest.mark.parametrize("isa", ["avx512", "avx2"])
def test_the_portable_build_agrees_to_rounding(real: str, rtol: float, isa: str) -> None:
    fast = _fused(_kernel(real, isa), "adam-sam")[0]
    portable = _fused(_kernel(real, "portable"), "adam-sam")[0]
    a, b = fast.unstack(fast.flat), portable.unstack(portable.flat)
    assert float((a - b).abs().max()) <= rtol * float(b.abs().max())
    x, y, _ = _data(fast.flat.dtype)
    assert torch.allclose(fast.mse(x, y), portable.mse(x, y), rtol=rtol)


@pytest.mark.parametrize("isa", ["avx512", "avx2", "portable"])
@pytest.mark.parametrize("setting", sorted(SETTINGS))
def test_the_fused_epoch_is_torchs_step_sam_and_optimizer(isa: str, setting: str) -> None:
    # float64: the two paths differ only in where roundings fall (one fused multiply-add,
    # one multiplication by a reciprocal), so they agree to a few units in the last place.
    kernel = _kernel("double", isa)
    fused, fused_losses = _fused(kernel, setting)
    stepped, stepped_losses = _stepped(kernel, setting)
    a, b = fused.unstack(fused.flat), stepped.unstack(stepped.flat)
    assert float((a - b).abs().max()) <= 1e-13 * float(b.abs().max()), setting
    for got, want in zip(fused_losses, stepped_losses, strict=True):
        assert torch.allclose(got, want, rtol=1e-13)


@pytest.mark.parametrize("setting", ["adam", "sgd-momentum"])
def test_optimizer_state_round_trips_through_a_checkpoint(setting: str) -> None:
    kernel = _kernel("double", native.available_isas()[0])
    reference, _ = _fused(kernel, setting, epochs=2)
    # One epoch, then its parameters and optimizer state into a fresh net and optimizer.
    before = _net(kernel)
    x, y, perms = _data(before.flat.dtype)
    name, columns = _columns(before, setting)
    opt = LaneOptimizer(before, name, *columns)
    before.shuffle(x, y, perms)
    before.train_epoch(opt, 32)
    state = {k: v.clone() for k, v in opt.state().items()}
    assert sorted(state) == (["exp_avg", "exp_avg_sq", "step"] if name == "adam" else ["buf"])
    after = _net(kernel)
    after.flat.copy_(before.flat)
    resumed = LaneOptimizer(after, name, *_columns(after, setting)[1])
    resumed.load_state(state)
    after.shuffle(x, y, perms)
    after.train_epoch(resumed, 32)
    assert torch.equal(after.flat, reference.flat)


def test_the_isa_variable_forces_a_width(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(native.ISA_ENV, "portable")
    assert native.chosen_isa() == "portable"
    assert "-portable-" in native.library_name("float")
    monkeypatch.delenv(native.ISA_ENV)
    assert native.chosen_isa() == native.available_isas()[0]


def test_a_bad_isa_variable_is_reported_and_falls_back(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(native.ISA_ENV, "sse9")
    with pytest.raises(ValueError, match="unknown SWEEPER_KERNEL_ISA 'sse9'; choose one of: "):
        native.chosen_isa()
    native.load.cache_clear()
    try:
        with caplog.at_level(logging.WARNING):
            assert native.load("float") is None
        assert "sse9" in caplog.text
    finally:
        native.load.cache_clear()


def test_each_width_builds_its_own_library() -> None:
    names = {native.library_name("float", isa) for isa in native.ISAS}
    assert len(names) == len(native.ISAS)
    for isa in native.available_isas():
        kernel = _kernel("float", isa)
        assert kernel.isa == isa and kernel.lanes == native.ISAS[isa][0] // 4
