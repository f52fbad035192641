"""The batched trainer is the per-trial trainer computed in another order.

In float64 a member must reproduce its per-trial run to 1e-8 relative (final MSEs and every
epoch's train loss); in float32, the seed-means of grid cells agree within the seeds' spread.
The batched optimizers are also checked step by step against torch.optim.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from sweeper import kernel as native
from sweeper.kernel.lanes import LaneMLP
from sweeper.optim.batched import BatchedOptimizer
from sweeper.optim.sam import sam_ascent
from sweeper.tasks.obesity.batched import train_group
from sweeper.tasks.obesity.data import load_split
from sweeper.tasks.obesity.model import build_model
from sweeper.tasks.obesity.params import ObesityParams
from sweeper.tasks.obesity.stacked import StackedMLP
from sweeper.tasks.obesity.train import TrainResult, train_one


def _rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-300)


@pytest.fixture(params=["kernel", "torch"])
def implementation(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with the C kernel (`LaneMLP`) and with PyTorch's batched products."""
    if request.param == "kernel":
        if native.load("double") is None:
            pytest.skip("the C kernel does not compile here (no working C compiler)")
    else:
        monkeypatch.setenv(native.ENABLE_ENV, "0")
    return str(request.param)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize(("wd", "rho"), [(0.0, 0.0), (1e-3, 0.0), (0.0, 0.05), (1e-2, 0.1)])
def test_float64_members_match_per_trial_runs(
    data_dir: Path, optimizer: str, wd: float, rho: float, implementation: str
) -> None:
    lrs = [3e-3, 2e-2] if optimizer == "sgd" else [1e-3, 2e-2]
    base = {"optimizer": optimizer, "weight_decay": wd, "sam_rho": rho, "dtype": "float64"}
    members = [
        (ObesityParams(**base, lr=lr, epochs=6, sam_epochs=3), seed)
        for lr in lrs
        for seed in (0, 1)
    ]
    data = load_split(members[0][0], data_dir)
    batched = train_group(members, data)
    for (params, seed), got in zip(members, batched, strict=True):
        assert isinstance(got, TrainResult), got
        want = train_one(params, seed, data)
        for name in ("test_mse", "train_mse"):
            assert _rel(got.metrics[name], want.metrics[name]) < 1e-8, (name, params, seed)
        assert len(got.curves["train_loss"]) == len(want.curves["train_loss"])
        for a, b in zip(got.curves["train_loss"], want.curves["train_loss"], strict=True):
            assert _rel(a, b) < 1e-8


def test_float64_cosine_schedule_and_validation_curve_match(data_dir: Path) -> None:
    common = {"optimizer": "adam", "schedule": "cosine", "cosine_t_max": 3, "epochs": 5}
    members = [
        (ObesityParams(**common, lr=lr, val_fraction=0.15, dtype="float64"), 0)
        for lr in (1e-3, 5e-3)
    ]
    data = load_split(members[0][0], data_dir)
    for (params, seed), got in zip(members, train_group(members, data), strict=True):
        assert isinstance(got, TrainResult)
        want = train_one(params, seed, data)
        for name in ("test_mse", "val_mse"):
            assert _rel(got.metrics[name], want.metrics[name]) < 1e-8
        for a, b in zip(got.curves["val_mse"], want.curves["val_mse"], strict=True):
            assert _rel(a, b) < 1e-8


def test_float32_cell_means_agree_within_the_seed_spread(data_dir: Path) -> None:
    seeds = range(4)
    cells = [("adam", 3e-3, 0.0, 0.0), ("sgd", 2e-2, 1e-3, 0.0), ("adam", 1e-3, 0.0, 0.05)]
    for optimizer, lr, wd, rho in cells:
        members = [
            (
                ObesityParams(
                    optimizer=optimizer,
                    lr=lr,
                    weight_decay=wd,
                    sam_rho=rho,
                    epochs=30,
                    sam_epochs=15,
                ),
                seed,
            )
            for seed in seeds
        ]
        data = load_split(members[0][0], data_dir)
        batched = [r.metrics["test_mse"] for r in train_group(members, data)]  # type: ignore[union-attr]
        single = [train_one(p, s, data).metrics["test_mse"] for p, s in members]
        mean_b, mean_s = sum(batched) / len(seeds), sum(single) / len(seeds)
        spread = math.sqrt(sum((v - mean_s) ** 2 for v in single) / (len(seeds) - 1))
        assert abs(mean_b - mean_s) <= max(spread, 1e-3), (optimizer, lr, batched, single)


def test_both_executors_store_the_same_float64_results(data_dir: Path, tmp_path: Path) -> None:
    from sweeper.launch.backends import launch_local
    from sweeper.launch.options import WorkerOptions
    from sweeper.plan import grid
    from sweeper.store import Store
    from sweeper.study import parse_study
    from sweeper.tasks import get_task

    study = parse_study(
        {
            "name": "eq",
            "task": "obesity",
            "metric": "test_mse",
            "seeds": 2,
            "fixed": {"epochs": 3, "sam_epochs": 2, "dtype": "float64"},
            "space": {"optimizer": ["sgd", "adam"], "lr": [3e-3, 2e-2], "sam_rho": [0.0, 0.05]},
        },
        "eq",
    )
    results = []
    for batched in (False, True):
        url = f"sqlite:///{tmp_path / f'{batched}.db'}"
        with Store(url, create=True) as store:
            sid = store.save_study(study, grid(study, get_task("obesity").group_key)).study_id
        options = WorkerOptions(str(data_dir), batched=batched, group_size=8 if batched else 1)
        launch_local(url, "eq", 1, options)
        with Store(url) as store:
            frame = store.frame(sid).set_index("key")
        assert (frame["state"] == "completed").all()
        results.append(frame)
    trial, batched_frame = results
    assert batched_frame["started_at"].nunique() == 4  # four groups of 4 members, one claim each
    for key, row in trial.iterrows():
        assert _rel(batched_frame.loc[key, "test_mse"], row["test_mse"]) < 1e-8


def test_a_diverging_member_fails_alone(data_dir: Path) -> None:
    members = [(ObesityParams(optimizer="sgd", lr=lr, epochs=3), 0) for lr in (1e-3, 1e-3)]
    data = load_split(members[0][0], data_dir)
    clean = train_group(members[:1], data)[0]
    # Poison member 1's input rows only: its loss becomes NaN, member 0 must not notice.
    poisoned = type(data)(**{**data.__dict__})
    results = _train_with_poisoned_member(members, poisoned)
    assert isinstance(results[0], TrainResult) and isinstance(clean, TrainResult)
    assert results[0].metrics == clean.metrics
    assert results[1] == "diverged: train loss became nan at epoch 1"


def _train_with_poisoned_member(members, data):  # type: ignore[no-untyped-def]
    import sweeper.tasks.obesity.batched as ob

    original = ob.build_model

    def build(seed: int, dtype: str = "float32") -> torch.nn.Module:
        model = original(seed, dtype)
        build.calls += 1  # type: ignore[attr-defined]
        if build.calls == 2:  # type: ignore[attr-defined]
            with torch.no_grad():
                model[0].weight[0, 0] = float("nan")
        return model

    build.calls = 0  # type: ignore[attr-defined]
    ob.build_model = build
    try:
        return train_group(members, data)
    finally:
        ob.build_model = original


def _random_net(members: int, dtype: torch.dtype) -> tuple[StackedMLP, list[torch.nn.Module]]:
    models = [build_model(seed, "float64").to(dtype) for seed in range(members)]
    layers = [
        [(m.weight.detach(), m.bias.detach()) for m in model if isinstance(m, torch.nn.Linear)]
        for model in models
    ]
    return StackedMLP(layers, 7.0), models


def _lane_net(members: int, real: str) -> tuple[LaneMLP, list[torch.nn.Module]]:
    kernel = native.load(real)
    if kernel is None:
        pytest.skip("the C kernel does not compile here (no working C compiler)")
    dtype = torch.float32 if real == "float" else torch.float64
    models = [build_model(seed, "float64").to(dtype) for seed in range(members)]
    layers = [
        [(m.weight.detach(), m.bias.detach()) for m in model if isinstance(m, torch.nn.Linear)]
        for model in models
    ]
    return LaneMLP(layers, 7.0, kernel), models


def _autograd(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor
) -> tuple[float, torch.Tensor]:
    """Loss and flat gradient (weights transposed, then biases, per layer) by autograd."""
    model.zero_grad()
    loss = torch.nn.functional.mse_loss(model(x), y)
    loss.backward()
    grads = [
        g
        for m in model
        if isinstance(m, torch.nn.Linear)
        for g in (m.weight.grad.t().flatten(), m.bias.grad)
    ]
    return loss.item(), torch.cat(grads)


@pytest.mark.parametrize(("real", "rtol"), [("double", 1e-11), ("float", 2e-4)])
def test_lane_kernel_matches_autograd_member_by_member(real: str, rtol: float) -> None:
    # 6 members: not a multiple of the lanes (4 or 8), so the last block is padded.
    net, models = _lane_net(6, real)
    dtype = net.flat.dtype
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(200, 16, generator=gen, dtype=dtype) * 3
    y = torch.rand(200, generator=gen, dtype=dtype) * 7
    perms = torch.stack([torch.randperm(200, generator=gen) for _ in models])
    net.shuffle(x, y, perms)
    loss = net.batch_loss_and_grad(32, 64)  # each member its own rows perms[m, 32:64]
    grads = net.unstack(net.grad)
    for i, model in enumerate(models):
        rows = perms[i, 32:64]
        ref_loss, ref_grad = _autograd(model, x[rows], y[rows].unsqueeze(1))
        assert math.isclose(float(loss[i]), ref_loss, rel_tol=rtol)
        scale = float(ref_grad.abs().max())
        assert float((grads[i] - ref_grad).abs().max()) <= rtol * scale, i
    # Evaluation on a set shared by every member.
    with torch.no_grad():
        ref = [float(torch.nn.functional.mse_loss(m(x), y.unsqueeze(1))) for m in models]
    for got, want in zip(net.mse(x, y).tolist(), ref, strict=True):
        assert math.isclose(got, want, rel_tol=rtol)


def test_lane_kernel_keeps_a_nan_member_to_itself() -> None:
    net, _ = _lane_net(3, "double")
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(64, 16, generator=gen, dtype=torch.float64)
    y = torch.rand(64, generator=gen, dtype=torch.float64) * 7
    net.shuffle(x, y, torch.stack([torch.randperm(64, generator=gen) for _ in range(3)]))
    clean = net.batch_loss_and_grad(0, 32)
    clean_grad = net.unstack(net.grad).clone()
    net.flat[0, 20, 1] = float("nan")  # one weight of member 1 (block 0, lane 1)
    loss = net.batch_loss_and_grad(0, 32)
    grads = net.unstack(net.grad)
    assert math.isnan(float(loss[1])) and grads[1].isnan().any()
    for i in (0, 2):
        assert float(loss[i]) == float(clean[i])
        assert torch.equal(grads[i], clean_grad[i])


def test_float32_member_results_do_not_depend_on_their_group(data_dir: Path) -> None:
    # With the kernel a member's numbers never meet another's and its lane position does not
    # change its arithmetic, so how workers split a study into groups changes nothing, even in
    # float32: bit for bit.
    if native.load("float") is None:
        pytest.skip("the C kernel does not compile here (no working C compiler)")
    members = [
        (ObesityParams(optimizer="adam", lr=lr, weight_decay=1e-3, sam_rho=rho, epochs=4), s)
        for lr, rho, s in [(3e-3, 0.05, 0), (1e-3, 0.02, 1), (2e-2, 0.1, 2)]
    ]
    data = load_split(members[0][0], data_dir)
    together = train_group(members, data)
    alone = train_group(members[2:], data)[0]
    reordered = train_group([members[2], members[0]], data)
    assert isinstance(together[2], TrainResult) and isinstance(alone, TrainResult)
    assert together[2].metrics == alone.metrics
    assert together[2].curves == alone.curves
    assert isinstance(reordered[0], TrainResult) and isinstance(reordered[1], TrainResult)
    assert reordered[0].metrics == alone.metrics
    assert reordered[1].metrics == together[0].metrics  # type: ignore[union-attr]


def test_without_a_compiler_the_torch_products_take_over(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    monkeypatch.setenv(native.CACHE_ENV, str(tmp_path / "cache"))
    native.load.cache_clear()
    try:
        assert native.load("double") is None
        members = [(ObesityParams(lr=1e-3, epochs=2, dtype="float64"), s) for s in (0, 1)]
        data = load_split(members[0][0], data_dir)
        for (params, seed), got in zip(members, train_group(members, data), strict=True):
            assert isinstance(got, TrainResult)
            want = train_one(params, seed, data).metrics["test_mse"]
            assert _rel(got.metrics["test_mse"], want) < 1e-8
    finally:
        native.load.cache_clear()


def test_hand_written_backward_matches_autograd() -> None:
    net, models = _random_net(3, torch.float64)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 32, 16, generator=gen, dtype=torch.float64) * 3
    y = torch.rand(3, 32, 1, generator=gen, dtype=torch.float64) * 7
    loss = net.loss_and_grad(x, y)
    for i, model in enumerate(models):
        model.zero_grad()
        ref = torch.nn.functional.mse_loss(model(x[i]), y[i])
        ref.backward()
        assert torch.allclose(loss[i], ref, rtol=1e-12)
        # The stacked layout keeps each weight transposed ([in, out]), then its bias.
        grads = torch.cat(
            [
                g
                for m in model
                if isinstance(m, torch.nn.Linear)
                for g in (m.weight.grad.t().flatten(), m.bias.grad)
            ]
        )
        assert torch.allclose(net.grad[i], grads, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("name", ["sgd", "adam", "sgd-momentum"])
def test_batched_optimizers_match_torch_optim(name: str) -> None:
    gen = torch.Generator().manual_seed(1)
    flat = torch.randn(2, 10, generator=gen, dtype=torch.float64)
    lr = torch.tensor([[1e-2], [3e-3]], dtype=torch.float64)
    wd = torch.tensor([[0.0], [1e-2]], dtype=torch.float64)
    mom = torch.tensor([[0.9], [0.5]], dtype=torch.float64) if name == "sgd-momentum" else None
    opt = BatchedOptimizer(name.split("-")[0], flat, lr, wd, mom)
    refs = []
    for i in range(2):
        p = torch.nn.Parameter(flat[i].clone())
        if name == "adam":
            ref_opt: torch.optim.Optimizer = torch.optim.Adam(
                [p], lr=float(lr[i]), weight_decay=float(wd[i])
            )
        else:
            ref_opt = torch.optim.SGD(
                [p],
                lr=float(lr[i]),
                weight_decay=float(wd[i]),
                momentum=float(mom[i]) if mom is not None else 0.0,
            )
        refs.append((p, ref_opt))
    for _ in range(5):
        grad = torch.randn(2, 10, generator=gen, dtype=torch.float64)
        opt.step(grad)
        for i, (p, ref_opt) in enumerate(refs):
            p.grad = grad[i].clone()
            ref_opt.step()
            assert torch.allclose(flat[i], p.detach(), rtol=1e-13, atol=1e-15)


def test_sam_ascent_uses_one_norm_per_member() -> None:
    grad = torch.tensor([[3.0, 4.0], [0.0, 0.0]], dtype=torch.float64)
    e = sam_ascent(grad, torch.tensor([[0.5], [0.5]], dtype=torch.float64))
    assert torch.allclose(e[0], torch.tensor([0.3, 0.4], dtype=torch.float64))
    assert torch.equal(e[1], torch.zeros(2, dtype=torch.float64))  # zero gradient: no move


def test_workers_claim_the_costliest_groups_first(tmp_path: Path) -> None:
    # Costs per trial: SAM's two passes over 3 epochs (6) against 2 epochs without (2). In
    # plan order the group without SAM comes first; by cost the SAM group is claimed first,
    # its part of the split as large as the other's, so no worker is left alone with it.
    from sweeper.plan import grid
    from sweeper.store import Store, WorkerId
    from sweeper.study import parse_study
    from sweeper.tasks import get_task

    task = get_task("obesity")
    study = parse_study(
        {
            "name": "cost",
            "task": "obesity",
            "metric": "test_mse",
            "seeds": 2,
            "fixed": {"epochs": 2, "sam_epochs": 3},
            "space": {"lr": [1e-3, 3e-3], "sam_rho": [0.0, 0.05]},
        },
        "cost",
    )
    plan = grid(study, task.group_key)
    sam_group = next(t.group for t in plan if t.params["sam_rho"] > 0)
    assert plan[0].group != sam_group
    assert task.group_cost(sam_group) == 3 * task.group_cost(plan[0].group)  # type: ignore[attr-defined]
    url = f"sqlite:///{tmp_path / 'cost.db'}"
    with Store(url, create=True) as store:
        sid = store.save_study(study, plan).study_id
        oldest = store.claim(sid, WorkerId("w:1", "h", 1), limit=8)
        assert {t.params["sam_rho"] for t in oldest} == {0.0}  # no cost: the oldest group
        costly = store.claim(sid, WorkerId("w:2", "h", 2), limit=8, share=2, cost=task.group_cost)  # type: ignore[attr-defined]
        assert len(costly) == 2 and {t.params["sam_rho"] for t in costly} == {0.05}
        rest = store.claim(sid, WorkerId("w:3", "h", 3), limit=8, share=2, cost=task.group_cost)  # type: ignore[attr-defined]
        assert len(rest) == 2 and {t.params["sam_rho"] for t in rest} == {0.05}
        assert store.claim(sid, WorkerId("w:4", "h", 4), limit=8, cost=task.group_cost) == []  # type: ignore[attr-defined]
