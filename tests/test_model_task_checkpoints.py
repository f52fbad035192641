"""Model tasks checkpoint on their own: a trial (or a batched group's member) killed mid-training
resumes where it saved, with final metrics and every curve ``==`` those of an uninterrupted run
(per trial in float64 and float32, batched under torch.func and on the C kernel); a checkpoint of
another precision or other code is never loaded, and each is gone once its outcome is taken."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from sweeper import kernel as native
from sweeper.checkpoints import CheckpointPolicy
from sweeper.tasks.base import RunContext, TrialInput, TrialOutcome
from sweeper.tasks.function import FunctionTask
from sweeper.tasks.model import ModelResult, ModelSpec, accuracy
from sweeper.tasks.model.batched import run_batched, train_batched
from sweeper.tasks.model.checkpoints import spec_code
from sweeper.tasks.model.lanes import plain_mlp
from sweeper.tasks.model.task import ModelTask, as_model_task
from tests.fixtures.checkpoints import Killed, epochs_in, files, kill_at

EPOCHS = 5


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def data(params: dict[str, Any]) -> Any:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(100, 6, generator=g, dtype=torch.float64)
    y = (x[:, 0] + x[:, 1] > 0).long() + (x[:, 2] > 0.8).long()
    return (x[:60], y[:60]), (x[60:80], y[60:80]), (x[80:], y[80:])


def build_plain(params: dict[str, Any]) -> nn.Module:
    return nn.Sequential(nn.Linear(6, params["width"]), nn.Tanh(), nn.Linear(params["width"], 3))


def build_normed(params: dict[str, Any]) -> nn.Module:
    """Not a plain MLP (LayerNorm): batched groups take the torch.func path."""
    w = params["width"]
    return nn.Sequential(nn.Linear(6, w), nn.LayerNorm(w), nn.ReLU(), nn.Linear(w, 3))


def spec_of(build: Any, dtype: str) -> ModelSpec:
    return ModelSpec(build, data, "cross_entropy", {"accuracy": accuracy}, dtype)  # type: ignore[arg-type]


#: (optimizer settings) x members: SGD with momentum and a cosine schedule; Adam with SAM.
GROUPS = {
    "sgd": [{"optimizer": "sgd", "lr": lr, "momentum": m, "schedule": "cosine"}
            for lr, m in ((0.1, 0.9), (0.05, 0.0), (0.2, 0.5))],
    "adam-sam": [{"optimizer": "adam", "lr": lr, "sam_rho": rho, "weight_decay": 1e-3}
                 for lr, rho in ((0.01, 0.05), (0.003, 0.1), (0.02, 0.02))],
}  # fmt: skip


def trials(optimizer: str) -> list[TrialInput]:
    return [
        TrialInput(10 + i, f"{optimizer}{i}".ljust(32, "0"), params, seed=i + 1)
        for i, params in enumerate(
            {"width": 8, "epochs": EPOCHS, "batch_size": 16, **p} for p in GROUPS[optimizer]
        )
    ]


def task_of(spec: ModelSpec, tmp_path: Path) -> ModelTask:
    function = FunctionTask(
        spec, name="model.py:spec", metric="val_loss", trials_dir=tmp_path / "trials",
        prune_curve="val_loss",
    )  # fmt: skip
    task = as_model_task(function)
    assert isinstance(task, ModelTask)
    return task


def killed_at(epoch: int) -> Any:
    """A pruner that kills the run when it is asked about `epoch` (before that epoch saved)."""

    def should_prune(trial_id: int, position: int, value: float) -> bool:
        if position == epoch:
            raise Killed
        return False

    return should_prune


@pytest.fixture
def policy(tmp_path: Path) -> CheckpointPolicy:
    made = CheckpointPolicy.for_study("study", every_s=0, every_epochs=1, root=tmp_path / "ck")
    assert made is not None
    return made


def resumed_outcomes(task: ModelTask, inputs: Sequence[TrialInput], ctx: RunContext,
                     policy: CheckpointPolicy) -> list[TrialOutcome]:  # fmt: skip
    """Run to the end; each trial's checkpoint is there until its outcome has been taken."""
    got = []
    for outcome in task.run(inputs, ctx):
        key = next(t.key for t in inputs if t.trial_id == outcome.trial_id)
        assert (policy.directory / key / "state.pt").exists()
        got.append(outcome)
    assert files(policy.directory) == []
    return sorted(got, key=lambda o: o.trial_id)


def assert_same(got: Sequence[TrialOutcome], want: Sequence[TrialOutcome]) -> None:
    assert [o.trial_id for o in got] == [o.trial_id for o in want]
    for a, b in zip(got, want, strict=True):
        assert a.error is None and not a.pruned, a
        assert a.metrics == b.metrics  # bit for bit
        assert a.curves == b.curves
        assert len(a.curves["train_loss"]) == EPOCHS


# --- per trial ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("optimizer", ["sgd", "adam-sam"])
def test_a_killed_per_trial_run_resumes_bit_for_bit(
    tmp_path: Path, policy: CheckpointPolicy, trace: Path, dtype: str, optimizer: str
) -> None:
    task = task_of(spec_of(build_normed, dtype), tmp_path)
    inputs = trials(optimizer)[:2]
    want = list(task.run(inputs, RunContext(data_dir=tmp_path)))

    with pytest.raises(Killed):  # asked about epoch 3: the last checkpoint is epoch 2's
        list(task.run(inputs, RunContext(data_dir=tmp_path, checkpoints=policy,
                                         should_prune=killed_at(3))))  # fmt: skip
    assert files(policy.directory) == [f"{inputs[0].key}/state.pt"]
    saved = torch.load(policy.directory / inputs[0].key / "state.pt", weights_only=True)
    assert saved["header"]["kind"] == f"model/per-trial/{dtype}"
    assert saved["state"]["user"]["epoch"] == 2

    trace.write_text("")
    got = resumed_outcomes(task, inputs, RunContext(data_dir=tmp_path, checkpoints=policy), policy)
    assert epochs_in(trace) == (EPOCHS - 2) + EPOCHS  # the first resumed at epoch 3
    assert_same(got, want)


def test_a_per_trial_checkpoint_of_another_dtype_or_code_is_not_loaded(
    tmp_path: Path, policy: CheckpointPolicy, trace: Path
) -> None:
    inputs = trials("sgd")[:1]
    f64 = task_of(spec_of(build_normed, "float64"), tmp_path)
    want = list(f64.run(inputs, RunContext(data_dir=tmp_path)))
    for task, used in (
        (task_of(spec_of(build_normed, "float32"), tmp_path), policy),  # another precision
        (f64, replace(policy, code="another study code")),  # another version of the code
    ):
        with pytest.raises(Killed):
            list(task.run(inputs, RunContext(data_dir=tmp_path, checkpoints=used,
                                             should_prune=killed_at(4))))  # fmt: skip
        assert files(policy.directory) == [f"{inputs[0].key}/state.pt"]
        trace.write_text("")
        got = resumed_outcomes(f64, inputs, RunContext(data_dir=tmp_path, checkpoints=policy),
                               policy)  # fmt: skip
        assert epochs_in(trace) == EPOCHS  # trained from the start
        assert_same(got, want)


def test_the_code_hash_covers_the_users_module(tmp_path: Path) -> None:
    source = (
        "import torch\nfrom torch import nn\nfrom sweeper.tasks.model import ModelSpec\n"
        "def build(params):\n    return nn.Linear(2, {width})\n"
        "spec = ModelSpec(build, (torch.zeros(4, 2), torch.zeros(4, {width})))\n"
    )
    codes = []
    for name, width in (("a", 1), ("b", 1), ("c", 3)):
        (tmp_path / f"{name}.py").write_text(source.format(width=width))
        loaded = FunctionTask.load(f"{name}.py:spec", tmp_path, metric="m", trials_dir=tmp_path)
        assert isinstance(loaded.fn, ModelSpec)
        codes.append(spec_code(loaded.fn))
    assert codes[0] == codes[1] != codes[2]  # the same source, then another
    assert spec_code(spec_of(build_normed, "float64")) == spec_code(spec_of(build_plain, "float32"))


def test_a_diverged_per_trial_run_keeps_no_checkpoint(
    tmp_path: Path, policy: CheckpointPolicy
) -> None:
    task = task_of(spec_of(build_normed, "float64"), tmp_path)
    params = {"width": 8, "epochs": EPOCHS, "lr": 1e30, "momentum": 0.9}
    wild = TrialInput(1, "w".ljust(32, "0"), params, 1)
    (outcome,) = task.run([wild], RunContext(data_dir=tmp_path, checkpoints=policy))
    assert outcome.error is not None and "nan at epoch 3" in outcome.error  # after 2 saves
    assert files(policy.directory) == []


# --- batched groups ----------------------------------------------------------------------


def kernel_or_skip() -> None:
    if native.load("double") is None or native.load("float") is None:
        pytest.skip("the C kernel does not compile here (no working C compiler)")


@pytest.mark.parametrize(("build", "dtype"), [
    (build_normed, "float64"), (build_normed, "float32"), (build_plain, "float64"),
    (build_plain, "float32"),
])  # fmt: skip
@pytest.mark.parametrize("optimizer", ["sgd", "adam-sam"])
def test_a_killed_batched_group_resumes_bit_for_bit(
    tmp_path: Path, policy: CheckpointPolicy, trace: Path, build: Any, dtype: str, optimizer: str
) -> None:
    spec = spec_of(build, dtype)
    kernel = plain_mlp(build({"width": 8})) is not None
    if kernel:
        kernel_or_skip()
    task = task_of(spec, tmp_path)
    inputs = trials(optimizer)
    want = sorted(task.run(inputs, RunContext(data_dir=tmp_path, batched=True)),
                  key=lambda o: o.trial_id)  # fmt: skip

    with pytest.raises(Killed):  # the pruner asked about epoch 3: epoch 2 saved
        list(task.run(inputs, RunContext(data_dir=tmp_path, batched=True, checkpoints=policy,
                                         should_prune=killed_at(3))))  # fmt: skip
    assert files(policy.directory) == [f"{t.key}/state.pt" for t in inputs]
    saved = torch.load(policy.directory / inputs[0].key / "state.pt", weights_only=True)
    path = f"kernel-{native.load('double').isa}" if kernel else "torch"  # type: ignore[union-attr]
    assert saved["header"]["kind"] == f"model/batched/{dtype}/{path}"
    assert saved["state"]["epoch"] == 2

    trace.write_text("")
    ctx = RunContext(data_dir=tmp_path, batched=True, checkpoints=policy)
    got = resumed_outcomes(task, inputs, ctx, policy)
    assert epochs_in(trace) == (EPOCHS - 2) * len(inputs)  # epochs 3 to 5 only
    assert_same(got, want)


@pytest.mark.parametrize("build", [build_normed, build_plain])
def test_a_member_checkpoint_of_another_dtype_or_code_is_not_loaded(
    tmp_path: Path, policy: CheckpointPolicy, trace: Path, build: Any
) -> None:
    if plain_mlp(build({"width": 8})) is not None:
        kernel_or_skip()
    members = [(dict(t.params), t.seed) for t in trials("sgd")]
    keys = [t.key for t in trials("sgd")]
    f64 = spec_of(build, "float64")
    want = train_batched(f64, members)
    for spec, used in ((spec_of(build, "float32"), policy), (f64, replace(policy, code="other"))):
        with pytest.raises(Killed):
            list(run_batched(spec, members, checkpoints=used, keys=keys, heartbeat=kill_at(3)))
        assert len(files(policy.directory)) == len(members)
        trace.write_text("")
        got = dict(run_batched(f64, members, checkpoints=policy, keys=keys))
        assert epochs_in(trace) == EPOCHS * len(members)  # trained from the start
        assert [got[i] for i in range(len(members))] == want
        assert files(policy.directory) == []


@pytest.mark.parametrize("build", [build_normed, build_plain])
def test_members_saved_at_different_epochs_train_as_parts(
    tmp_path: Path, policy: CheckpointPolicy, trace: Path, build: Any
) -> None:
    if plain_mlp(build({"width": 8})) is not None:
        kernel_or_skip()
    spec = spec_of(build, "float64")
    inputs = trials("sgd")
    members = [(dict(t.params), t.seed) for t in inputs]
    keys = [t.key for t in inputs]
    want = train_batched(spec, members)
    # Members 0 and 1 reached epoch 3 in one group, member 2 epoch 1 in another; all three
    # come back in one group, with a fourth that never started.
    extra = ({**members[0][0], "lr": 0.07}, 9)
    with pytest.raises(Killed):
        list(
            run_batched(spec, members[:2], checkpoints=policy, keys=keys[:2], heartbeat=kill_at(4))
        )
    with pytest.raises(Killed):
        list(
            run_batched(spec, members[2:], checkpoints=policy, keys=keys[2:], heartbeat=kill_at(2))
        )
    assert len(files(policy.directory)) == 3
    trace.write_text("")
    got = dict(run_batched(spec, [*members, extra], checkpoints=policy, keys=[*keys, "x" * 32]))
    assert epochs_in(trace) == 2 * (EPOCHS - 3) + (EPOCHS - 1) + EPOCHS
    assert files(policy.directory) == []
    for i, expected in enumerate([*want, train_batched(spec, [extra])[0]]):
        result = got[i]
        assert isinstance(result, ModelResult) and isinstance(expected, ModelResult)
        assert result.metrics == expected.metrics
        assert result.curves == expected.curves


def test_a_pruned_or_diverged_member_keeps_no_checkpoint(
    tmp_path: Path, policy: CheckpointPolicy
) -> None:
    spec = spec_of(build_normed, "float64")
    inputs = trials("sgd")
    inputs[2] = replace(inputs[2], params={**inputs[2].params, "lr": 1e30})  # diverges
    task = task_of(spec, tmp_path)

    def prune_first(trial_id: int, position: int, value: float) -> bool:
        return trial_id == inputs[0].trial_id and position == 2

    ctx = RunContext(data_dir=tmp_path, batched=True, checkpoints=policy, should_prune=prune_first)
    seen = []
    for outcome in task.run(inputs, ctx):
        seen.append(outcome)
        if outcome.trial_id != inputs[1].trial_id:
            continue
        assert files(policy.directory) == [f"{inputs[1].key}/state.pt"]
    by_id = {o.trial_id: o for o in seen}
    assert by_id[inputs[0].trial_id].pruned
    assert "diverged" in str(by_id[inputs[2].trial_id].error)
    assert by_id[inputs[1].trial_id].error is None
    assert files(policy.directory) == []


@pytest.mark.parametrize("batched", [True, False])
def test_a_resumed_trial_is_pruned_as_an_uninterrupted_one(
    tmp_path: Path, policy: CheckpointPolicy, batched: bool
) -> None:
    """The pruner sees the epochs after the kill at their own positions, and a pruned trial's
    curves hold the epochs before the kill too."""
    task = task_of(spec_of(build_normed, "float64"), tmp_path)
    inputs = trials("adam-sam")

    def prune_first(trial_id: int, position: int, value: float) -> bool:
        return trial_id == inputs[0].trial_id and position == 4

    def run(ctx: RunContext) -> list[TrialOutcome]:
        return sorted(task.run(inputs, ctx), key=lambda o: o.trial_id)

    want = run(RunContext(data_dir=tmp_path, batched=batched, should_prune=prune_first))
    with pytest.raises(Killed):
        run(RunContext(data_dir=tmp_path, batched=batched, checkpoints=policy,
                       should_prune=killed_at(3)))  # fmt: skip
    got = run(RunContext(data_dir=tmp_path, batched=batched, checkpoints=policy,
                         should_prune=prune_first))  # fmt: skip
    assert [o.pruned for o in got] == [True, False, False]
    assert len(got[0].curves["val_loss"]) == 4
    assert got == want
    assert files(policy.directory) == []


# --- the whole run, killed ----------------------------------------------------------------

STUDY_SPEC = """
import torch
from torch import nn
from sweeper.tasks.model import ModelSpec, accuracy

def data(params):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 6, generator=g, dtype=torch.float64)
    y = (x[:, 0] + x[:, 1] > 0).long()
    return (x[:48], y[:48]), (x[48:], y[48:])

def build(params):
    w = params["width"]
    return nn.Sequential(nn.Linear(6, w), nn.LayerNorm(w), nn.ReLU(), nn.Linear(w, 2))

spec = ModelSpec(build, data, "cross_entropy", {"accuracy": accuracy}, "float64")
"""
#: long enough that a run cannot finish between its first checkpoint and the kill after it.
STUDY_EPOCHS = 300


def test_sweeper_run_killed_twice_finishes_with_identical_results(tmp_path: Path) -> None:
    import importlib.util
    import sys

    where = Path(__file__).resolve().parents[1] / "bench/soak.py"
    found = importlib.util.spec_from_file_location("sweeper_bench_soak", where)
    assert found is not None and found.loader is not None
    soak = importlib.util.module_from_spec(found)
    sys.modules[found.name] = soak
    found.loader.exec_module(soak)
    (tmp_path / "model.py").write_text(STUDY_SPEC)
    study = tmp_path / "study.toml"
    study.write_text(
        'name = "model_soak"\ntask = "model.py:spec"\nkind = "grid"\nmetric = "val_loss"\n'
        f"seeds = 2\n[fixed]\nwidth = 8\nepochs = {STUDY_EPOCHS}\nbatch_size = 16\n"
        'optimizer = "adam"\nsam_rho = 0.05\n[space]\nlr = [0.001, 0.003]\n'
    )
    result = soak.soak(
        study,
        tmp_path / "soak",
        kill_every=(0.0, 0.3),
        checkpoint_every=0.2,
        workers=1,
        max_kills=2,
        after_checkpoint=True,  # each kill comes after that run saved: it made progress
        reference=True,
        timeout_s=300,
    )
    assert result.kills == 2 and result.runs == 3
    assert result.states == {"completed": 4}
    assert result.mismatches == []  # metrics and curves bit for bit as the uninterrupted run's
    assert result.resumed >= 2  # both restarts continued from a checkpoint
    assert result.epochs_needed == 4 * STUDY_EPOCHS
    assert result.epochs_trained < 2 * result.epochs_needed
    assert not list((tmp_path / "soak" / "checkpoints").rglob("state.pt"))
