"""A model task's plain MLPs on the C kernel (`sweeper.tasks.model.lanes`).

The contract: a group whose model is a plain MLP with a named loss trains through the kernel,
chosen on its own, and gives in float64 the numbers of the ``torch.func`` path (and of per-trial
runs) to 1e-8 for every activation, loss, optimizer, SAM on or off and depth; anything else
takes the ``torch.func`` path. A stopped member leaves the lanes and the others go on bit for
bit; a diverged member ends with the reason and leaves the others alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
import torch
from torch import nn

from sweeper import kernel as native
from sweeper.kernel.arch import LaneArch
from sweeper.kernel.lanes import LaneMLP, LaneOptimizer
from sweeper.tasks.model import ModelResult, ModelSpec, accuracy, lanes
from sweeper.tasks.model import batched as batched_module
from sweeper.tasks.model.batched import run_batched, train_batched
from sweeper.tasks.model.hyper import train_params
from sweeper.tasks.model.per_trial import train_per_trial

TOL = 1e-8
ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "gelu": nn.GELU}

_gen = torch.Generator().manual_seed(0)
X = torch.randn(70, 5, generator=_gen, dtype=torch.float64)
CLASSES = (X[:, 0] + X[:, 1] > 0).long() + (X[:, 2] > 0.8).long()
VALUES = torch.stack([X[:, 0] * X[:, 1], X[:, 2].sin(), X[:, 3] - X[:, 4]], dim=1)


@pytest.fixture(autouse=True)
def _kernel_compiles(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(native.ENABLE_ENV, raising=False)
    if native.load("double") is None:
        pytest.skip("the C kernel does not compile here (no working C compiler)")


def spec_of(
    activation: str, loss: str, outputs: int, depth: int, dtype: str = "float64"
) -> ModelSpec:
    """A plain MLP 5 -> 6 (x depth) -> outputs, on 40 / 15 / 15 rows."""

    def build(params: dict[str, Any]) -> nn.Module:
        width = params.get("width", 6)
        modules: list[nn.Module] = [nn.Linear(5, width)]
        for _ in range(depth - 1):
            modules += [ACTIVATIONS[activation](), nn.Linear(width, width)]
        modules += [ACTIVATIONS[activation](), nn.Linear(width, outputs)]
        return nn.Sequential(*modules)

    if loss == "cross_entropy":
        y, metrics = CLASSES, {"accuracy": accuracy}
    else:
        y, metrics = (VALUES[:, :outputs] if outputs > 1 else VALUES[:, 0]), {}
    splits = ((X[:40], y[:40]), (X[40:55], y[40:55]), (X[55:], y[55:]))
    return ModelSpec(build, splits, loss, metrics, dtype)  # type: ignore[arg-type]


def members_of(
    optimizer: str, sam_rho: float, count: int = 5, epochs: int = 3, schedule: str = "cosine"
) -> list[tuple[dict[str, Any], int]]:
    """`count` members of one group: learning rates and weight decays, own seeds."""
    out = []
    for i in range(count):
        lr = (0.05, 0.2, 0.1)[i % 3] / (1 if optimizer == "sgd" else 10)
        params = {
            "optimizer": optimizer,
            "lr": lr,
            "weight_decay": (0.0, 1e-3, 1e-2)[i % 3],
            "momentum": 0.9 if optimizer == "sgd" else 0.0,
            "sam_rho": sam_rho * (1 + i / 4),
            "epochs": epochs,
            "batch_size": 16,
            "schedule": schedule,
        }
        out.append((params, 100 + i))
    return out


def on_torch_func(
    monkeypatch: pytest.MonkeyPatch, spec: ModelSpec, members: list[tuple[dict[str, Any], int]]
) -> list[ModelResult | str]:
    with monkeypatch.context() as m:
        m.setenv(native.ENABLE_ENV, "0")
        return train_batched(spec, members)


def worst_difference(got: ModelResult | str, want: ModelResult | str) -> float:
    assert isinstance(got, ModelResult), got
    assert isinstance(want, ModelResult), want
    assert got.metrics.keys() == want.metrics.keys()
    assert got.curves.keys() == want.curves.keys()
    worst = max(abs(got.metrics[k] - want.metrics[k]) for k in want.metrics)
    for name, curve in want.curves.items():
        assert len(got.curves[name]) == len(curve)
        worst = max([worst, *(abs(a - b) for a, b in zip(got.curves[name], curve, strict=True))])
    return worst


def counting_kernel_runs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the groups `run_batched` hands to the kernel."""
    calls: list[int] = []
    original = lanes.run_lanes

    def counted(*args: Any, **kwargs: Any) -> Iterator[tuple[int, ModelResult | str | None]]:
        calls.append(len(args[1]))
        return original(*args, **kwargs)

    monkeypatch.setattr(batched_module, "run_lanes", counted)
    return calls


# (activation, loss, outputs, optimizer, SAM rho, depth): every activation, loss, optimizer,
# SAM on and off, and depth 1 to 3 several times each.
CASES = [
    ("relu", "mse", 1, "sgd", 0.0, 1),
    ("relu", "mse", 3, "adam", 0.05, 2),
    ("relu", "cross_entropy", 3, "adamw", 0.0, 3),
    ("tanh", "mse", 1, "adamw", 0.05, 2),
    ("tanh", "mse", 3, "sgd", 0.0, 3),
    ("tanh", "cross_entropy", 3, "adam", 0.0, 1),
    ("sigmoid", "mse", 1, "adam", 0.0, 3),
    ("sigmoid", "mse", 3, "adamw", 0.05, 1),
    ("sigmoid", "cross_entropy", 3, "sgd", 0.05, 2),
    ("gelu", "mse", 1, "sgd", 0.05, 2),
    ("gelu", "mse", 3, "adamw", 0.0, 1),
    ("gelu", "cross_entropy", 3, "adam", 0.05, 3),
    ("gelu", "cross_entropy", 3, "adamw", 0.05, 2),
    ("relu", "cross_entropy", 3, "sgd", 0.05, 1),
]


@pytest.mark.parametrize(("activation", "loss", "outputs", "optimizer", "rho", "depth"), CASES)
def test_the_kernel_path_is_the_torch_func_path(
    monkeypatch: pytest.MonkeyPatch,
    activation: str,
    loss: str,
    outputs: int,
    optimizer: str,
    rho: float,
    depth: int,
) -> None:
    spec = spec_of(activation, loss, outputs, depth)
    members = members_of(optimizer, rho, schedule="none" if depth == 2 else "cosine")
    calls = counting_kernel_runs(monkeypatch)
    got = train_batched(spec, members)
    assert calls == [len(members)]
    want = on_torch_func(monkeypatch, spec, members)
    assert calls == [len(members)]  # SWEEPER_NATIVE=0: not the kernel
    for g, w in zip(got, want, strict=True):
        assert worst_difference(g, w) < TOL
        assert isinstance(g, ModelResult)
        assert len(g.curves["train_loss"]) == 3 and len(g.curves["val_loss"]) == 3


@pytest.mark.parametrize(
    ("activation", "loss", "outputs", "optimizer", "rho", "depth"),
    [CASES[1], CASES[8], CASES[12]],
)
def test_the_kernel_path_is_each_members_per_trial_run(
    activation: str, loss: str, outputs: int, optimizer: str, rho: float, depth: int
) -> None:
    spec = spec_of(activation, loss, outputs, depth)
    members = members_of(optimizer, rho, count=3)
    for (params, seed), got in zip(members, train_batched(spec, members), strict=True):
        assert worst_difference(got, train_per_trial(spec, params, seed)) < TOL


def test_float32_groups_train_on_the_kernel_too(monkeypatch: pytest.MonkeyPatch) -> None:
    if native.load("float") is None:
        pytest.skip("no float kernel")
    spec = spec_of("tanh", "cross_entropy", 3, 2, dtype="float32")
    members = members_of("adam", 0.05, schedule="none")
    calls = counting_kernel_runs(monkeypatch)
    got = train_batched(spec, members)
    assert calls == [len(members)]
    for g, w in zip(got, on_torch_func(monkeypatch, spec, members), strict=True):
        assert worst_difference(g, w) < 1e-4


class WithNorm(nn.Sequential):
    pass


NOT_PLAIN: dict[str, Callable[[dict[str, Any]], nn.Module]] = {
    "layer norm": lambda *_: nn.Sequential(nn.Linear(5, 6), nn.LayerNorm(6), nn.Linear(6, 1)),
    "two activations": lambda *_: nn.Sequential(
        nn.Linear(5, 6), nn.ReLU(), nn.Tanh(), nn.Linear(6, 1)
    ),
    "no activation": lambda *_: nn.Sequential(nn.Linear(5, 6), nn.Linear(6, 1)),
    "ends with an activation": lambda *_: nn.Sequential(nn.Linear(5, 6), nn.ReLU()),
    "no bias": lambda *_: nn.Sequential(nn.Linear(5, 6), nn.ReLU(), nn.Linear(6, 1, bias=False)),
    "tanh-approximated gelu": lambda *_: nn.Sequential(
        nn.Linear(5, 6), nn.GELU(approximate="tanh"), nn.Linear(6, 1)
    ),
    "other activation": lambda *_: nn.Sequential(nn.Linear(5, 6), nn.ELU(), nn.Linear(6, 1)),
    "a Sequential subclass": lambda *_: WithNorm(nn.Linear(5, 6), nn.ReLU(), nn.Linear(6, 1)),
    "not a Sequential": lambda *_: nn.Linear(5, 1),
}


@pytest.mark.parametrize("name", sorted(NOT_PLAIN))
def test_only_plain_mlps_are_plain(name: str) -> None:
    assert lanes.plain_mlp(NOT_PLAIN[name]({})) is None


def test_plain_mlps_name_their_activations() -> None:
    model = spec_of("gelu", "mse", 1, 3).build({})
    assert lanes.plain_mlp(model) == ("gelu", "gelu", "gelu")
    mixed = nn.Sequential(
        nn.Linear(5, 6), nn.ReLU(), nn.Linear(6, 6), nn.Sigmoid(), nn.Linear(6, 2)
    )
    assert lanes.plain_mlp(mixed) == ("relu", "sigmoid")


def _chosen(spec: ModelSpec) -> bool:
    params = members_of("adam", 0.0)[0][0]
    return (
        lanes.kernel_for(spec, spec.model(params, 0), train_params(params), spec.splits(params))
        is not None
    )


def test_the_kernel_is_chosen_only_where_it_applies(monkeypatch: pytest.MonkeyPatch) -> None:
    plain = spec_of("relu", "mse", 1, 1)
    assert _chosen(plain)
    norm = ModelSpec(NOT_PLAIN["layer norm"], plain.data, "mse", {}, "float64")
    assert not _chosen(norm)
    own_loss = ModelSpec(
        plain.build, plain.data, lambda p, t: (p - t.view(p.shape)).abs().mean(), {}, "float64"
    )
    assert not _chosen(own_loss)
    soft_targets = ModelSpec(
        plain.build, (X, torch.softmax(VALUES, 1)), "cross_entropy", {}, "float64"
    )
    assert not _chosen(soft_targets)
    monkeypatch.setenv(native.ENABLE_ENV, "0")
    assert not _chosen(plain)


def test_groups_it_does_not_apply_to_take_the_torch_func_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = counting_kernel_runs(monkeypatch)
    plain = spec_of("tanh", "mse", 1, 1)
    norm = ModelSpec(NOT_PLAIN["layer norm"], plain.data, "mse", {}, "float64")
    results = train_batched(norm, members_of("sgd", 0.0, count=2))
    assert calls == [] and all(isinstance(r, ModelResult) for r in results)


def test_stopped_members_leave_the_lanes_and_the_others_go_on_bit_for_bit() -> None:
    spec = spec_of("tanh", "cross_entropy", 3, 2)
    lanes_per_block = native.load("double").lanes  # type: ignore[union-attr]
    count = lanes_per_block + 3  # two blocks, one after the stops
    members = members_of("sgd", 0.05, count=count, epochs=4)
    stops = {1: {1, 4}, 2: {0}}

    def judge(epoch: int, values: Mapping[int, dict[str, float]]) -> list[int]:
        assert all({"train_loss", "val_loss", "val_accuracy"} <= set(v) for v in values.values())
        return sorted(i for i in stops.get(epoch, ()) if i in values)

    seen = list(run_batched(spec, members, judge=judge))
    unpruned = train_batched(spec, members)
    assert [i for i, r in seen if r is None] == [1, 4, 0]
    ended = dict(seen)
    assert len(ended) == count
    for i, result in ended.items():
        if i not in (0, 1, 4):
            assert result == unpruned[i]  # ==: every metric and curve value, bit for bit


def test_a_diverging_member_ends_with_the_reason_and_leaves_the_others_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = spec_of("relu", "mse", 1, 2)
    members = members_of("sgd", 0.0, count=4, schedule="none")
    members[2][0]["lr"] = 1e6
    got = train_batched(spec, members)
    assert isinstance(got[2], str) and got[2].startswith("diverged: train loss became")
    alone = train_batched(spec, [m for i, m in enumerate(members) if i != 2])
    assert [got[0], got[1], got[3]] == alone
    want = on_torch_func(monkeypatch, spec, members)
    assert isinstance(want[2], str) and want[2].split(" at ")[-1] == got[2].split(" at ")[-1]


def test_avx512_and_avx2_train_a_model_bit_for_bit_alike() -> None:
    if not {"avx512", "avx2"} <= set(native.available_isas()):
        pytest.skip("this CPU does not run both widths")
    model = spec_of("gelu", "cross_entropy", 3, 2).model({"width": 7}, 0)
    layers = [
        [(m.weight.detach(), m.bias.detach()) for m in model.children() if isinstance(m, nn.Linear)]
    ]
    arch = LaneArch(("gelu", "gelu"), head="identity", loss="cross_entropy")
    outs = []
    for isa in ("avx512", "avx2"):
        kernel = native.load("double", isa)
        assert kernel is not None
        net = LaneMLP(layers * 3, 1.0, kernel, arch)
        cols = [net.column([v] * 3) for v in (0.01, 1e-3, 0.0, 0.05)]
        opt = LaneOptimizer(net, "adamw", *cols)
        net.shuffle(X[:40], CLASSES[:40].double(), torch.stack([torch.arange(40)] * 3))
        outs.append((net.train_epoch(opt, 16), net.predict(X[40:])))
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1])
