"""Checkpoints: a trial killed mid-training resumes where it saved, with results bit for bit those
of an uninterrupted run (batched obesity groups, per-trial obesity, ECG, users' functions); files
are private, atomic, verified before loading, and gone once the trial is recorded or failed."""

from __future__ import annotations

import importlib.util
import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from sweeper import kernel as native
from sweeper.checkpoints import (
    ROOT_ENV,
    CheckpointPolicy,
    checkpoint_root,
)
from sweeper.tasks.base import RunContext, TrialInput
from sweeper.tasks.obesity.batched import train_group, train_group_iter
from sweeper.tasks.obesity.data import load_split
from sweeper.tasks.obesity.params import ObesityParams
from sweeper.tasks.obesity.task import ObesityTask
from sweeper.tasks.obesity.train import TrainResult, train_one
from sweeper.trial import Trial
from tests.fixtures.checkpoints import Killed, epochs_in, files, kill_at

REPO = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def policy(tmp_path: Path) -> CheckpointPolicy:
    made = CheckpointPolicy.for_study("study", every_s=0, every_epochs=2, root=tmp_path / "ck")
    assert made is not None
    return made


# --- the files ---------------------------------------------------------------------------


def test_root_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(ROOT_ENV, raising=False)
    monkeypatch.setenv("SWEEPER_CACHE_DIR", str(tmp_path / "cache"))
    assert checkpoint_root() == tmp_path / "cache" / "checkpoints"
    monkeypatch.setenv(ROOT_ENV, str(tmp_path / "mine"))
    assert checkpoint_root() == tmp_path / "mine"
    monkeypatch.delenv(ROOT_ENV)
    monkeypatch.delenv("SWEEPER_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert checkpoint_root() == tmp_path / "xdg" / "sweeper" / "checkpoints"
    policy = CheckpointPolicy.for_study("obesity", every_s=60)
    assert policy is not None and policy.directory == tmp_path / "xdg/sweeper/checkpoints/obesity"
    assert CheckpointPolicy.for_study("obesity", every_s=0) is None  # --checkpoint-every 0


def test_save_is_private_and_load_verifies_the_header(policy: CheckpointPolicy) -> None:
    ckpt = policy.trial("k" * 32, "obesity/float64", "code1")
    assert ckpt.load() is None
    assert ckpt.save({"epoch": 3, "w": torch.arange(4.0)})
    for path in (policy.directory.parent, policy.directory, ckpt.dir):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700, path
    assert stat.S_IMODE(ckpt.path.stat().st_mode) == 0o600
    assert [p.name for p in ckpt.dir.iterdir()] == ["state.pt"]  # no temporary file left
    state = ckpt.load()
    assert state is not None and state["epoch"] == 3 and state["w"].tolist() == [0, 1, 2, 3]

    # Another version of the training code, another kind of state, another trial: never
    # loaded, and the stale file is deleted.
    assert policy.trial("k" * 32, "obesity/float64", "code2").load() is None
    assert not ckpt.path.exists()
    ckpt.save({"epoch": 3})
    assert policy.trial("k" * 32, "obesity/float32", "code1").load() is None
    ckpt.save({"epoch": 3})
    other = policy.trial("j" * 32, "obesity/float64", "code1")
    other.dir.mkdir()
    os.replace(ckpt.path, other.path)  # a file copied to another trial's place
    assert other.load() is None
    # A user's code hash (the study's) is part of the header too.
    changed = CheckpointPolicy(policy.directory, every_epochs=2, code="user-v2")
    ckpt.save({"epoch": 3})
    assert changed.trial("k" * 32, "obesity/float64", "code1").load() is None


def test_a_torn_or_foreign_file_is_never_loaded(policy: CheckpointPolicy) -> None:
    ckpt = policy.trial("k" * 32, "ecg")
    ckpt.save({"epoch": 1, "w": torch.zeros(1000)})
    ckpt.path.write_bytes(ckpt.path.read_bytes()[:500])  # a write cut short
    assert ckpt.load() is None and not ckpt.path.exists()

    ckpt.save({"epoch": 1})
    ckpt.path.chmod(0o666)  # anyone could have written it
    assert ckpt.load() is None
    ckpt.path.chmod(0o600)
    ckpt.dir.chmod(0o777)
    assert ckpt.load() is None
    ckpt.dir.chmod(0o700)
    assert ckpt.load() == {"epoch": 1}

    # A pickle that would run code is refused by weights_only loading.
    import pickle

    class Evil:
        def __reduce__(self) -> tuple[Any, ...]:
            return (os.system, ("echo planted",))

    ckpt.path.write_bytes(pickle.dumps({"header": ckpt.header, "state": Evil()}))
    assert ckpt.load() is None


def test_an_unwritable_root_only_costs_the_checkpoint(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    policy = CheckpointPolicy(tmp_path / "file" / "study", every_epochs=1)
    ckpt = policy.trial("k" * 32, "ecg")
    assert ckpt.save({"epoch": 1}) is False
    assert ckpt.load() is None


def test_cadence_by_epochs_and_by_seconds(
    policy: CheckpointPolicy, monkeypatch: pytest.MonkeyPatch, trace: Path
) -> None:
    cadence = policy.cadence(members=3, label="abc")
    assert [cadence.epoch_done(e) for e in range(1, 6)] == [False, True, False, True, False]
    assert trace.read_text().splitlines()[0].split()[1:] == ["1", "3", "abc"]
    assert epochs_in(trace) == 15

    clock = {"now": 100.0}
    monkeypatch.setattr("sweeper.checkpoints.time.monotonic", lambda: clock["now"])
    timed = CheckpointPolicy(policy.directory, every_s=60).cadence()
    clock["now"] += 59
    assert not timed.epoch_done(1)
    clock["now"] += 1
    assert timed.epoch_done(2)
    timed.saved()
    assert not timed.epoch_done(3) and timed.saves == 1


# --- the batched obesity groups --------------------------------------------------------


@pytest.fixture(params=["kernel", "torch"])
def implementation(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "kernel":
        if native.load("double") is None:
            pytest.skip("the C kernel does not compile here (no working C compiler)")
    else:
        monkeypatch.setenv(native.ENABLE_ENV, "0")
    return str(request.param)


def group(optimizer: str, n_epochs: int = 6) -> list[tuple[ObesityParams, int]]:
    common: dict[str, Any] = {
        "optimizer": optimizer,
        "dtype": "float64",
        "epochs": n_epochs,
        "sam_epochs": n_epochs,
        "schedule": "cosine",
        "cosine_t_max": 4,
        "val_fraction": 0.1,
    }
    if optimizer == "sgd":
        settings = [(3e-3, 0.0, 0.9, 0), (1e-2, 1e-3, 0.5, 1), (2e-2, 0.0, 0.0, 2)]
        return [
            (ObesityParams(**common, lr=lr, weight_decay=wd, momentum=mom, sam_rho=0.05), s)
            for lr, wd, mom, s in settings
        ]
    settings = [(3e-3, 0.0, 0), (1e-3, 1e-3, 1), (2e-2, 1e-2, 2)]
    return [(ObesityParams(**common, lr=lr, weight_decay=wd), s) for lr, wd, s in settings]


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_a_killed_group_resumes_bit_for_bit(
    data_dir: Path, policy: CheckpointPolicy, trace: Path, optimizer: str, implementation: str
) -> None:
    members = group(optimizer)
    data = load_split(members[0][0], data_dir)
    want = train_group(members, data)
    keys = [f"{optimizer}{i}".ljust(32, "0") for i in range(len(members))]

    with pytest.raises(Killed):  # killed during epoch 5: the last checkpoint is epoch 4's
        list(train_group_iter(members, data, checkpoints=policy, keys=keys, heartbeat=kill_at(5)))
    assert files(policy.directory) == [f"{k}/state.pt" for k in sorted(keys)]
    trace.unlink()

    results = train_group_iter(members, data, checkpoints=policy, keys=keys)
    got: dict[int, TrainResult | str] = {}
    for i, result in results:
        # Yielded but not yet recorded: the member's checkpoint is still there.
        assert (policy.directory / keys[i] / "state.pt").exists()
        got[i] = result
    assert epochs_in(trace) == 2 * len(members)  # epochs 5 and 6 only
    assert files(policy.directory) == []  # each removed once the next result was asked for
    for i, expected in enumerate(want):
        result = got[i]
        assert isinstance(result, TrainResult) and isinstance(expected, TrainResult)
        assert result.metrics == expected.metrics
        assert result.curves == expected.curves


def test_members_saved_at_different_epochs_resume_in_any_grouping(
    data_dir: Path, policy: CheckpointPolicy, trace: Path
) -> None:
    if native.load("double") is None:
        pytest.skip("the C kernel does not compile here (no working C compiler)")
    members = group("sgd")
    data = load_split(members[0][0], data_dir)
    want = train_group(members, data)
    keys = [f"m{i}".ljust(32, "0") for i in range(3)]
    # Member 0 alone reached epoch 4; members 1 and 2, in another worker's group, epoch 2;
    # now all three are claimed together.
    with pytest.raises(Killed):
        list(train_group_iter(members[:1], data, checkpoints=policy, keys=keys[:1],
                              heartbeat=kill_at(5)))  # fmt: skip
    with pytest.raises(Killed):
        list(train_group_iter(members[1:], data, checkpoints=policy, keys=keys[1:],
                              heartbeat=kill_at(3)))  # fmt: skip
    trace.unlink()
    pairs = list(train_group_iter(members, data, checkpoints=policy, keys=keys))
    assert [i for i, _ in pairs] == [0, 1, 2]  # the most advanced part first
    assert epochs_in(trace) == 2 + 2 * 4
    got = dict(pairs)
    for i, expected in enumerate(want):
        assert isinstance(expected, TrainResult)
        assert got[i] == expected


def test_a_diverged_member_is_recorded_at_once_and_keeps_no_checkpoint(
    data_dir: Path, policy: CheckpointPolicy, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sweeper.tasks.obesity.batched as batched

    original = batched.build_model

    def poisoned(seed: int, dtype: str = "float32") -> torch.nn.Module:
        model = original(seed, dtype)
        if seed == 1:  # member 1's loss becomes NaN in its first epoch
            with torch.no_grad():
                model[0].weight[0, 0] = float("nan")
        return model

    monkeypatch.setattr(batched, "build_model", poisoned)
    common: dict[str, Any] = {"optimizer": "sgd", "dtype": "float64", "epochs": 6, "lr": 1e-3}
    members = [(ObesityParams(**common), 0), (ObesityParams(**common), 1)]
    data = load_split(members[0][0], data_dir)
    keys = ["a".ljust(32, "0"), "b".ljust(32, "0")]
    beats = {"n": 0}

    def beat() -> None:
        beats["n"] += 1

    results = train_group_iter(members, data, checkpoints=policy, keys=keys, heartbeat=beat)
    index, reason = next(results)
    assert index == 1 and isinstance(reason, str) and reason.startswith("diverged")
    assert beats["n"] < 6  # yielded during training, not at its end
    rest = list(results)
    assert [i for i, _ in rest] == [0] and isinstance(rest[0][1], TrainResult)
    assert files(policy.directory) == []


def test_a_group_that_fails_keeps_no_checkpoints(data_dir: Path, policy: CheckpointPolicy) -> None:
    members = group("adam")
    data = load_split(members[0][0], data_dir)
    keys = [f"f{i}".ljust(32, "0") for i in range(3)]

    def broken() -> None:
        if files(policy.directory):
            raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        list(train_group_iter(members, data, checkpoints=policy, keys=keys, heartbeat=broken))
    assert files(policy.directory) == []


def test_the_task_removes_a_checkpoint_only_after_the_outcome_is_taken(
    data_dir: Path, policy: CheckpointPolicy
) -> None:
    params = {"optimizer": "adam", "lr": 1e-3, "epochs": 4, "dtype": "float64"}
    trials = [TrialInput(1, "t".ljust(32, "0"), params, 0)]
    for batched in (True, False):
        ctx = RunContext(data_dir=data_dir, batched=batched, checkpoints=policy)
        outcomes = ObesityTask().run(trials, ctx)
        first = next(outcomes)
        assert first.error is None and len(first.curves["train_loss"]) == 4
        assert files(policy.directory) == ["t".ljust(32, "0") + "/state.pt"], batched
        assert list(outcomes) == []
        assert files(policy.directory) == []


# --- per-trial obesity and ECG ------------------------------------------------------------


def test_a_killed_per_trial_run_resumes_bit_for_bit(
    data_dir: Path, policy: CheckpointPolicy, trace: Path
) -> None:
    for params in (
        ObesityParams(optimizer="sgd", lr=1e-2, momentum=0.9, sam_rho=0.05, sam_epochs=5,
                      schedule="cosine", cosine_t_max=3, val_fraction=0.1, dtype="float64"),
        ObesityParams(optimizer="adam", lr=3e-3, weight_decay=1e-3, epochs=5),
    ):  # fmt: skip
        data = load_split(params, data_dir)
        want = train_one(params, 3, data)
        ckpt = policy.trial(params.optimizer.ljust(32, "0"), "obesity")
        with pytest.raises(Killed):
            train_one(params, 3, data, checkpoint=ckpt, heartbeat=kill_at(3))
        trace.write_text("")
        got = train_one(params, 3, data, checkpoint=ckpt)
        assert epochs_in(trace) == 3  # epochs 3 to 5
        assert got == want


@pytest.mark.parametrize("method", ["swa", "agereg"])
def test_a_killed_ecg_trial_resumes_bit_for_bit(
    tmp_path: Path, policy: CheckpointPolicy, trace: Path, method: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    from sweeper.tasks.ecg import loader
    from sweeper.tasks.ecg.data import load_data
    from sweeper.tasks.ecg.params import EcgParams
    from sweeper.tasks.ecg.synth import write_dataset
    from sweeper.tasks.ecg.train import train_one as train_ecg

    monkeypatch.setenv("SWEEPER_CACHE_DIR", str(tmp_path / "cache"))
    loader._load_cached.cache_clear()
    write_dataset(tmp_path / "data" / "ecg_synth", records_per_domain=6, seed=0)
    params = EcgParams(
        dataset="synthetic", classes="synthetic9", records_per_domain=6, fs=50, length=128,
        base_channels=4, epochs=4, t_max=1, anneal_epochs=1, batch_size=8, val_fraction=0.34,
        target="CPSC", method=method,
    )  # fmt: skip
    data = load_data(params, tmp_path / "data")
    want = train_ecg(params, 5, data)
    ckpt = policy.trial("e".ljust(32, "0"), "ecg")
    rng_before = torch.get_rng_state()
    with pytest.raises(Killed):  # during epoch 3: resumes after epoch 2
        train_ecg(params, 5, data, checkpoint=ckpt, heartbeat=kill_at(3))
    trace.write_text("")
    got = train_ecg(params, 5, data, checkpoint=ckpt)
    assert torch.equal(torch.get_rng_state(), rng_before)  # the global RNG is left alone
    assert epochs_in(trace) == 2
    assert got.metrics == want.metrics
    assert got.curves == want.curves


# --- users' functions -------------------------------------------------------------------


def user_train(params: dict[str, Any], seed: int, trial: Trial) -> dict[str, float]:
    """A user's training function that checkpoints every epoch and resumes."""
    gen = torch.Generator().manual_seed(seed)
    w = torch.zeros(3, dtype=torch.float64)
    start = 1
    state = trial.restore()
    if state is not None:
        w, start = state["w"], state["epoch"] + 1
        gen.set_state(state["rng"])
    for epoch in range(start, params["epochs"] + 1):
        w = w + torch.rand(3, generator=gen, dtype=torch.float64)
        trial.report(epoch, loss=float(w.sum()))
        trial.checkpoint({"epoch": epoch, "w": w, "rng": gen.get_state()})
        if epoch == params.get("die_at"):
            raise Killed
    return {"loss": float(w.sum())}


def test_a_users_function_resumes_with_trial_restore(
    policy: CheckpointPolicy, tmp_path: Path
) -> None:
    from sweeper.tasks.function import FunctionTask

    task = FunctionTask(user_train, name="t.py:train", metric="loss", trials_dir=tmp_path)
    ctx = RunContext(data_dir=tmp_path, checkpoints=policy)
    want = next(
        task.run([TrialInput(1, "u".ljust(32, "0"), {"epochs": 5}, 0)], RunContext(tmp_path))
    )
    killed = TrialInput(2, "v".ljust(32, "0"), {"epochs": 5, "die_at": 3}, 0)
    with pytest.raises(Killed):
        next(task.run([killed], ctx))
    assert files(policy.directory) == ["v".ljust(32, "0") + "/state.pt"]
    resumed = TrialInput(2, "v".ljust(32, "0"), {"epochs": 5}, 0)
    outcomes = task.run([resumed], ctx)
    got = next(outcomes)
    assert got.error is None and got.metrics == want.metrics
    assert got.curves == want.curves == {"loss": want.curves["loss"]}
    assert len(got.curves["loss"]) == 5  # epochs 1-3 came back with the state
    assert list(outcomes) == [] and files(policy.directory) == []


def test_trial_checkpoint_follows_the_interval_and_needs_a_dict(
    tmp_path: Path, policy: CheckpointPolicy
) -> None:
    timed = CheckpointPolicy(policy.directory, every_s=3600)
    trial = Trial(1, 0, {}, data_dir=tmp_path, dir=tmp_path / "t",
                  checkpoint=timed.trial("w".ljust(32, "0"), "function"))  # fmt: skip
    assert trial.checkpoint({"a": 1}) is False  # an hour has not passed
    assert trial.checkpoint({"a": 2}, force=True) is True
    assert trial.restore() == {"a": 2}
    with pytest.raises(TypeError, match="state must be a dict"):
        trial.checkpoint([1, 2])  # type: ignore[arg-type]
    off = Trial(1, 0, {}, data_dir=tmp_path, dir=tmp_path / "t")  # checkpoints off
    assert off.checkpoint({"a": 1}, force=True) is False and off.restore() is None


USER_FILE = """
import os
from pathlib import Path

def train(params, seed, trial):
    saved = trial.checkpoint({"x": params["x"]}, force=True)
    files = list(Path(os.environ["SWEEPER_CHECKPOINT_DIR"]).rglob("state.pt"))
    return {"loss": params["x"], "saved": float(saved), "files": float(len(files))}
"""


@pytest.mark.parametrize("every", [60.0, 0.0])
def test_the_run_option_reaches_the_task(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, every: float
) -> None:
    from sweeper.launch.options import RunOptions
    from sweeper.launch.run import start
    from sweeper.launch.worker import run_worker
    from sweeper.store import Store
    from sweeper.study import load_study

    monkeypatch.setenv(ROOT_ENV, str(tmp_path / "ck"))
    (tmp_path / "train.py").write_text(USER_FILE)
    (tmp_path / "study.toml").write_text(
        'name = "opt"\ntask = "train.py:train"\nmetric = "loss"\n[space]\nx = [1.0, 2.0]\n'
    )
    study = load_study(tmp_path / "study.toml")
    started = start(study, str(tmp_path / "r.db"), RunOptions(checkpoint_every_s=every))
    assert started.worker.checkpoint_every_s == every
    run_worker(started.url, study.name, started.worker)
    with Store(started.url) as store:
        frame = store.frame(store.study("opt").id)
    assert list(frame["state"]) == ["completed", "completed"]
    expected = [1.0, 1.0] if every else [0.0, 0.0]
    assert list(frame["saved"]) == expected  # trial.checkpoint wrote (or, with 0, did not)
    assert list(frame["files"]) == expected  # under $SWEEPER_CHECKPOINT_DIR
    assert not list((tmp_path / "ck").rglob("state.pt"))  # removed once recorded


def test_a_bad_interval_is_one_clear_error() -> None:
    from sweeper.errors import SweeperError
    from sweeper.launch.limits import check_bounds
    from sweeper.launch.options import RunOptions

    for bad in (float("nan"), float("inf"), -1.0):
        with pytest.raises(SweeperError, match="--checkpoint-every .*: must be between 0 and"):
            check_bounds(RunOptions(checkpoint_every_s=bad))
    check_bounds(RunOptions(checkpoint_every_s=0.0))
    import subprocess

    shown = subprocess.run(
        [sys.executable, "-m", "sweeper", "run", "--help"],
        capture_output=True, text=True, check=True, env={**os.environ, "COLUMNS": "200"},
    ).stdout  # fmt: skip
    assert "--checkpoint-every" in shown and "SECONDS" in shown


# --- the whole run, killed ----------------------------------------------------------------


def _soak_module() -> Any:
    spec = importlib.util.spec_from_file_location("sweeper_bench_soak", REPO / "bench/soak.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


#: long enough that a run cannot finish between its first checkpoint and the kill that
#: follows it (the fused kernel trains this study at about 800 epochs a second).
TINY_EPOCHS = 1500


@pytest.fixture
def tiny_study(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "tiny.toml"
    path.write_text(
        'name = "soak_tiny"\ntask = "obesity"\nkind = "grid"\nmetric = "test_mse"\n'
        'direction = "minimize"\nseeds = [0, 1]\n\n'
        f'[fixed]\nepochs = {TINY_EPOCHS}\nbatch_size = 64\ndtype = "float64"\n'
        'optimizer = "adam"\n\n[space]\nlr = [1e-3, 3e-3]\n'
    )
    yield path


def test_sweeper_run_killed_twice_finishes_with_identical_results(
    tiny_study: Path, tmp_path: Path, data_dir: Path
) -> None:
    soak = _soak_module()
    result = soak.soak(
        tiny_study,
        tmp_path / "soak",
        kill_every=(0.0, 0.3),
        checkpoint_every=0.2,
        workers=1,
        max_kills=2,
        after_checkpoint=True,  # each kill comes after that run saved: it made progress
        reference=True,
        extra=["--data-dir", str(data_dir)],
        timeout_s=300,
    )
    assert result.kills == 2 and result.runs == 3
    assert result.states == {"completed": 4}
    assert result.mismatches == []  # metrics and curves bit for bit as the uninterrupted run's
    assert result.resumed >= 2  # both restarts continued from a checkpoint
    assert result.epochs_needed == 4 * TINY_EPOCHS
    assert result.epochs_trained < 2 * result.epochs_needed
    assert not list((tmp_path / "soak" / "checkpoints").rglob("state.pt"))
