"""A user's function as a task: loading (and its errors), outcomes, curves, pruning, code hashes."""

from __future__ import annotations

import hashlib
import math
import textwrap
from pathlib import Path

import pytest

from sweeper.code import CodeIdentity, command_identity, function_identity
from sweeper.tasks.base import RunContext, TrialInput, TrialOutcome
from sweeper.tasks.function import FunctionTask, TaskLoadError
from sweeper.trial import Trial, TrialPruned, curve_steps

TRAIN = """\
from pathlib import Path

from helper import double


def train(params, seed, trial):
    if params.get("fail"):
        raise ValueError("boom")
    if params.get("exit"):
        raise SystemExit(2)  # as sys.exit(2) would
    for epoch in range(1, params["epochs"] + 1):
        trial.report(epoch, loss=params["lr"] / epoch)
    (trial.dir / "model.txt").write_text(f"{trial.id} {trial.device} {trial.data_dir}")
    if params.get("helper_fails"):
        double(None)
    return {"val_loss": double(params["lr"]), "seed": seed}
"""

HELPER = """\
def double(x):
    return x * 2
"""


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def trial(trial_id: int, **params: object) -> TrialInput:
    return TrialInput(trial_id, f"key{trial_id}", params, seed=trial_id + 100)


def run(task: FunctionTask, trials: list[TrialInput], ctx: RunContext) -> list[TrialOutcome]:
    return list(task.run(trials, ctx))


@pytest.fixture
def ctx(tmp_path: Path) -> RunContext:
    return RunContext(data_dir=tmp_path / "data", device="cpu")


@pytest.fixture
def study(tmp_path: Path) -> Path:
    """A study directory with train.py and a sibling module it imports."""
    directory = tmp_path / "study"
    write(directory, "train.py", TRAIN)
    write(directory, "helper.py", HELPER)
    return directory


def load(study: Path, target: str = "train.py:train") -> FunctionTask:
    return FunctionTask.load(
        target, study, metric="val_loss", trials_dir=study.parent / "trials" / "s"
    )


def test_completed_trial_has_metrics_curves_and_a_directory(study: Path, ctx: RunContext) -> None:
    beats: list[int] = []
    ctx = RunContext(data_dir=ctx.data_dir, device="cuda:1", heartbeat=lambda: beats.append(1))
    [out] = run(load(study), [trial(7, lr=0.5, epochs=3)], ctx)
    assert out.error is None and not out.pruned
    assert out.metrics == {"val_loss": 1.0, "seed": 107.0}
    assert out.curves == {"loss": [0.5, 0.25, 0.5 / 3]}
    assert len(beats) == 3
    artifact = study.parent / "trials" / "s" / "key7" / "model.txt"
    assert artifact.read_text() == f"7 cuda:1 {ctx.data_dir}"


def test_a_raising_trial_fails_with_one_line_and_the_next_one_runs(
    study: Path, ctx: RunContext
) -> None:
    outs = run(
        load(study), [trial(1, fail=True, lr=1.0, epochs=1), trial(2, lr=1.0, epochs=1)], ctx
    )
    assert outs[0].error == "ValueError: boom (train.py:8 in train)"
    assert outs[0].log is not None and 'raise ValueError("boom")' in outs[0].log
    assert outs[1].error is None and outs[1].metrics["val_loss"] == 2.0
    [out] = run(load(study), [trial(3, exit=True)], ctx)
    assert out.error == "SystemExit: 2 (train.py:10 in train)"


def test_the_failing_line_is_the_innermost_one_of_the_users_files(
    study: Path, ctx: RunContext
) -> None:
    [out] = run(load(study), [trial(1, helper_fails=True, lr=1.0, epochs=1)], ctx)
    assert out.error == (
        "TypeError: unsupported operand type(s) for *: 'NoneType' and 'int' (helper.py:2 in double)"
    )
    assert out.curves == {"loss": [1.0]}  # reported before the failure, kept


def test_returned_metrics_are_checked(tmp_path: Path, ctx: RunContext) -> None:
    write(
        tmp_path,
        "m.py",
        """
        def train(params, seed, trial):
            return params["out"]
        """,
    )
    task = FunctionTask.load("m.py:train", tmp_path, metric="val_loss", trials_dir=tmp_path)
    cases = {
        1: {"loss": 0.1, "acc": 0.9},
        2: {"val_loss": math.nan},
        3: {"val_loss": 0.1, "acc": math.inf},
        4: {"val_loss": True},
        5: None,
        6: [0.1],
        7: {"val_loss": 0.25, "n": 3},
    }
    outs = run(task, [trial(i, out=v) for i, v in cases.items()], ctx)
    assert [o.error for o in outs] == [
        "returned metrics have no 'val_loss' (returned keys: acc, loss)",
        "metric 'val_loss' is nan",
        "metric 'acc' is inf",
        "metric 'val_loss' must be a number (got bool True)",
        "m.py:train returned None; return the metrics, e.g. {'val_loss': 0.12}",
        "metrics must be a dict of name -> number such as {'val_loss': 0.12} (got list)",
        None,
    ]
    assert outs[6].metrics == {"val_loss": 0.25, "n": 3.0}


def test_a_rejected_report_fails_the_trial_at_the_users_line(
    tmp_path: Path, ctx: RunContext
) -> None:
    write(
        tmp_path,
        "r.py",
        """
        def train(params, seed, trial):
            trial.report(1, loss=float("nan"))
        """,
    )
    task = FunctionTask.load("r.py:train", tmp_path, metric="val_loss", trials_dir=tmp_path)
    [out] = run(task, [trial(1)], ctx)
    assert out.error == "ValueError: value of 'loss' is nan (must be finite) (r.py:3 in train)"


def test_pruned_at_step_3(tmp_path: Path, ctx: RunContext) -> None:
    write(
        tmp_path,
        "p.py",
        """
        def train(params, seed, trial):
            for epoch in range(1, 11):
                trial.report(epoch, val_loss=1.0 / epoch, train_loss=2.0 / epoch)
            raise AssertionError("never reached: the trial is pruned at step 3")
        """,
    )
    asked: list[tuple[int, int, float]] = []

    def should_prune(trial_id: int, epoch: int, value: float) -> bool:
        asked.append((trial_id, epoch, value))
        return epoch == 3

    ctx = RunContext(data_dir=ctx.data_dir, should_prune=should_prune)
    task = FunctionTask.load(
        "p.py:train", tmp_path, metric="val_loss", trials_dir=tmp_path, prune_curve="val_loss"
    )
    assert task.validation_curve == "val_loss" and task.pruning_problem({}) is None
    [out] = run(task, [trial(5)], ctx)
    assert out.pruned and out.error is None
    assert out.curves == {"val_loss": [1.0, 0.5, 1 / 3], "train_loss": [2.0, 1.0, 2 / 3]}
    assert out.metrics == {"val_loss": 1 / 3, "train_loss": 2 / 3}
    assert asked == [(5, 1, 1.0), (5, 2, 0.5), (5, 3, 1 / 3)]


def test_load_errors_name_the_path(study: Path, tmp_path: Path) -> None:
    write(
        study,
        "bad.py",
        """
        not_a_function = 3
        def two(params, seed):
            pass
        def kw_only(params, seed, *, trial):
            pass
        """,
    )
    write(study, "broken.py", "x = 1\ndef f(:\n")
    write(study, "raises.py", "import does_not_exist_xyz\n")

    def error(target: str) -> str:
        with pytest.raises(TaskLoadError) as info:
            load(study, target)
        return str(info.value)

    assert error("nope.py:train") == f"task file not found: {study / 'nope.py'}"
    assert error("train.py:trian") == "train.py has no 'trian'; its functions: train"
    assert error("bad.py:not_a_function") == "bad.py:not_a_function is not callable (it is a int)"
    assert error("bad.py:two") == (
        "bad.py:two must accept 3 positional arguments (params, seed, trial); "
        "its signature is (params, seed)"
    )
    assert "must accept 3 positional arguments" in error("bad.py:kw_only")
    assert error("train.py") == (
        "task 'train.py' must be 'file.py:function' or 'package.module:function'"
    )
    assert error("broken.py:f").startswith("error while importing broken.py: SyntaxError: ")
    assert error("broken.py:f").endswith("(broken.py:2)")
    assert error("raises.py:f") == (
        "error while importing raises.py: ModuleNotFoundError: No module named "
        "'does_not_exist_xyz' (raises.py:1 in <module>)"
    )
    assert error("no_such_pkg_xyz.training:train") == (
        "cannot import module 'no_such_pkg_xyz.training': ModuleNotFoundError: "
        "No module named 'no_such_pkg_xyz'"
    )


def test_a_module_target_and_its_params_model(
    tmp_path: Path, ctx: RunContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, "mypkg_xyz/__init__.py", "")
    write(
        tmp_path,
        "mypkg_xyz/training.py",
        """
        from pydantic import BaseModel

        class Params(BaseModel):
            lr: float = 0.1

        def train(params, seed, trial):
            return {"val_loss": Params(**params).lr}

        train.Params = Params
        """,
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    task = FunctionTask.load(
        "mypkg_xyz.training:train", tmp_path / "elsewhere", metric="val_loss", trials_dir=tmp_path
    )
    assert task.params_model is not None and task.params_model.__name__ == "Params"
    assert task.params_model().model_dump() == {"lr": 0.1}
    [out] = run(task, [trial(1, lr=0.3)], ctx)
    assert out.metrics == {"val_loss": 0.3}


def test_an_explicit_params_model_from_the_same_file_imports_it_once(
    tmp_path: Path, ctx: RunContext
) -> None:
    write(
        tmp_path,
        "t.py",
        """
        from pydantic import BaseModel
        IMPORTS = []
        IMPORTS.append(1)

        class Params(BaseModel):
            epochs: int = 2

        def train(params, seed, trial):
            return {"val_loss": float(len(IMPORTS))}
        """,
    )
    task = FunctionTask.load(
        "t.py:train", tmp_path, metric="val_loss", trials_dir=tmp_path, params="t.py:Params"
    )
    assert task.params_model is not None and task.params_model().model_dump() == {"epochs": 2}
    [out] = run(task, [trial(1)], ctx)
    assert out.metrics == {"val_loss": 1.0}
    with pytest.raises(TaskLoadError, match=r"^t.py:IMPORTS is not a pydantic model"):
        FunctionTask.load(
            "t.py:train", tmp_path, metric="val_loss", trials_dir=tmp_path, params="t.py:IMPORTS"
        )


def test_from_source_runs_the_stored_text_and_names_its_file(
    tmp_path: Path, ctx: RunContext
) -> None:
    source = "def train(params, seed, trial):\n    return {'val_loss': 1 / params['x']}\n"
    task = FunctionTask.from_source(
        source, "remote/train.py", "train", metric="val_loss", trials_dir=tmp_path
    )
    outs = run(task, [trial(1, x=4), trial(2, x=0)], ctx)
    assert outs[0].metrics == {"val_loss": 0.25}
    assert outs[1].error == "ZeroDivisionError: division by zero (remote/train.py:2 in train)"
    assert outs[1].log is not None and "return {'val_loss': 1 / params['x']}" in outs[1].log
    with pytest.raises(
        TaskLoadError, match=r"^remote/train.py has no 'fit'; its functions: train$"
    ):
        FunctionTask.from_source(
            source, "remote/train.py", "fit", metric="val_loss", trials_dir=tmp_path
        )


def test_report_checks_values_and_steps(tmp_path: Path) -> None:
    t = Trial(1, 0, {"a": 1}, data_dir=tmp_path, dir=tmp_path / "t")
    with pytest.raises(
        TypeError, match=r"^value of 'loss' must be a real number \(got bool True\)"
    ):
        t.report(1, loss=True)  # bool is an int subclass to mypy, not a number here
    with pytest.raises(TypeError, match="value of 'loss' must be a real number"):
        t.report(1, loss="0.1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^value of 'loss' is nan \(must be finite\)$"):
        t.report(1, ok=1.0, loss=math.nan)
    with pytest.raises(TypeError, match="step must be an int"):
        t.report(1.5, loss=1.0)  # type: ignore[arg-type]
    assert t.curves == {}  # a rejected report records nothing, not even its good values
    t.report(10, loss=1.0)
    with pytest.raises(ValueError, match="step 10 of curve 'loss' does not come after"):
        t.report(10, loss=2.0)
    t.report(20, loss=0.5, acc=0.7)
    assert t.curves == {
        "loss": [1.0, 0.5],
        "loss@step": [10.0, 20.0],
        "acc": [0.7],
        "acc@step": [20.0],
    }
    assert curve_steps(t.curves, "loss") == [10, 20]
    assert curve_steps({"x": [1.0, 2.0]}, "x") == [1, 2]
    assert not (tmp_path / "t").exists()  # created on first access only
    assert t.dir.is_dir()
    params = t.params
    params["a"] = 2
    assert t.params == {"a": 1}


def test_report_asks_the_pruner_only_about_its_curve(tmp_path: Path) -> None:
    asked: list[tuple[int, int, float]] = []

    def should_prune(trial_id: int, position: int, value: float) -> bool:
        asked.append((trial_id, position, value))
        return value > 5

    t = Trial(
        3, 0, {}, data_dir=tmp_path, dir=tmp_path, should_prune=should_prune, prune_curve="val"
    )
    t.report(100, train=9.0)
    t.report(200, val=1.0)
    with pytest.raises(TrialPruned):
        t.report(300, val=6.0)
    assert asked == [(3, 1, 1.0), (3, 2, 6.0)]  # the value's position, as the pruner reads it
    assert t.curves["val"] == [1.0, 6.0]


def test_code_identity_of_a_function_file_and_a_module(tmp_path: Path) -> None:
    path = write(tmp_path, "train.py", "# café\ndef train(p, s, t): ...\n")
    ident = function_identity("train.py:train", tmp_path)
    assert ident.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert ident.short == ident.sha256[:12] and ident.path == "train.py"
    assert ident.source == path.read_text(encoding="utf-8")
    module = function_identity("sweeper.trial:Trial", tmp_path)
    assert module.path.endswith("trial.py") and module.source is None
    with pytest.raises(TaskLoadError, match="task file not found"):
        function_identity("missing.py:train", tmp_path)
    with pytest.raises(TaskLoadError, match="cannot find module 'no_such_pkg_xyz'"):
        function_identity("no_such_pkg_xyz:train", tmp_path)
    assert command_identity(["python", "-u", "train.py", "--lr", "{lr}"], tmp_path) == (
        CodeIdentity(ident.sha256, "train.py")
    )
    assert command_identity(["python", "-m", "pkg.train"], tmp_path) is None
