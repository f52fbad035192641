"""The obesity task: a small MLP regressing the ordinal obesity level (UCI dataset 544).

Follows `shared/protocols/obesity.md`. The data flow is::

    fetch CSV -> load_encoded (16 features, label 0..6; cached per process)
      -> split_data (one seeded shuffle per split_seed) -> train_one (one trial) -> TrialOutcome

`load_encoded`, `split_data`, `derive_seed` and `build_model` are public so that a batched
trainer can reuse exactly the same data, seeds and initial weights.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from sweeper.data import RemoteFile, fetch
from sweeper.errors import DataError, StudyFileError, TrialDiverged
from sweeper.plan import canonical_json
from sweeper.tasks.base import RunContext, TrialInput, TrialOutcome

if TYPE_CHECKING:
    import torch

FloatArray = npt.NDArray[np.float64]

#: the dataset file; ``SWEEPER_OBESITY_URL`` overrides its URL (see `dataset_path`).
OBESITY_CSV = RemoteFile(
    name="ObesityDataSet_raw_and_data_sinthetic.csv",
    subdir="obesity",
    sha256="28b6991062855d3d15642e38b1aa9d1b32fb7abbb5abf5b096f1868cd706154b",
    url=(
        "https://archive.ics.uci.edu/static/public/544/"
        "estimation+of+obesity+levels+based+on+eating+habits+and+physical+condition.zip"
    ),
    zip_member="ObesityDataSet_raw_and_data_sinthetic.csv",
)
URL_ENV = "SWEEPER_OBESITY_URL"

_NO_YES = {"no": 0, "yes": 1}
_FREQUENCY = {"no": 0, "Sometimes": 1, "Frequently": 2, "Always": 3}

#: input columns in CSV order -> category codes, or None for a numeric column kept raw.
#: Codes as the original code had them: binary columns alphabetical, CAEC/CALC by frequency,
#: MTRANS ordinal (not one-hot).
FEATURES: dict[str, dict[str, int] | None] = {
    "Gender": {"Female": 0, "Male": 1},
    "Age": None,
    "Height": None,
    "Weight": None,
    "family_history_with_overweight": _NO_YES,
    "FAVC": _NO_YES,
    "FCVC": None,
    "NCP": None,
    "CAEC": _FREQUENCY,
    "SMOKE": _NO_YES,
    "CH2O": None,
    "SCC": _NO_YES,
    "FAF": None,
    "TUE": None,
    "CALC": _FREQUENCY,
    "MTRANS": {
        "Bike": 0,
        "Walking": 1,
        "Public_Transportation": 2,
        "Motorbike": 3,
        "Automobile": 4,
    },
}
#: kept as a column of zeros: the label is banded BMI, so weight and height would give it away.
ZEROED = "Weight"
LABEL = "NObeyesdad"
#: label values in ordinal order, coded 0..6.
CLASSES: tuple[str, ...] = (
    "Insufficient_Weight",
    "Normal_Weight",
    "Overweight_Level_I",
    "Overweight_Level_II",
    "Obesity_Type_I",
    "Obesity_Type_II",
    "Obesity_Type_III",
)
#: the model's output is ``OUTPUT_SCALE * sigmoid(.)``, spanning the label range (0, 7).
OUTPUT_SCALE = 7.0
HIDDEN = 18


class ObesityParams(BaseModel):
    """Parameters of one obesity trial; the defaults are the faithful protocol."""

    model_config = ConfigDict(extra="forbid")

    optimizer: Literal["sgd", "adam"] = "adam"
    lr: float = Field(default=1e-3, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    #: SAM radius; 0 trains without SAM.
    sam_rho: float = Field(default=0.0, ge=0)
    #: SGD momentum; must stay 0 with adam.
    momentum: float = Field(default=0.0, ge=0, lt=1)
    epochs: int = Field(default=200, ge=1)
    #: epochs used instead of `epochs` when sam_rho > 0 (SAM costs two gradients per step).
    sam_epochs: int = Field(default=100, ge=1)
    batch_size: int = Field(default=32, ge=1)
    schedule: Literal["constant", "cosine"] = "constant"
    cosine_t_max: int = Field(default=100, ge=1)
    split_seed: int = Field(default=0, ge=0)
    train_fraction: float = Field(default=0.8, gt=0, lt=1)
    #: fraction of the training rows held out for validation; 0 = none (the faithful protocol).
    val_fraction: float = Field(default=0.0, ge=0, lt=1)
    standardize: bool = False
    dtype: Literal["float32", "float64"] = "float32"

    @model_validator(mode="after")
    def _momentum_is_for_sgd(self) -> ObesityParams:
        # Adam has no momentum argument; accepting one would silently run identical trials.
        if self.optimizer == "adam" and self.momentum != 0.0:
            raise ValueError(
                f"momentum applies to sgd only (got {self.momentum} with adam); "
                "leave it at 0 for adam"
            )
        return self

    @property
    def n_epochs(self) -> int:
        """Epochs this trial trains: `sam_epochs` with SAM, else `epochs`."""
        return self.sam_epochs if self.sam_rho > 0 else self.epochs


@dataclass(frozen=True)
class Split:
    """Encoded features (n, 16) and labels (n,) of each part of one split, as float64 arrays.

    `x_val` and `y_val` have zero rows when there is no validation set.
    """

    x_train: FloatArray
    y_train: FloatArray
    x_val: FloatArray
    y_val: FloatArray
    x_test: FloatArray
    y_test: FloatArray


@dataclass(frozen=True)
class TrainResult:
    """Metrics after the last epoch and per-epoch curves of one trained trial."""

    metrics: dict[str, float]
    curves: dict[str, list[float]]
    #: the epoch after which a pruner stopped training (None: trained to the end).
    pruned_at: int | None = None


def dataset_path(data_dir: Path) -> Path:
    """Return the verified CSV path, downloading it first if needed.

    The download URL is ``SWEEPER_OBESITY_URL`` when set (tests point it at a local server),
    else UCI's zip.

    Raises:
        DataError: see `sweeper.data.fetch`.
    """
    return fetch(OBESITY_CSV, data_dir, url=os.environ.get(URL_ENV) or None)


@functools.lru_cache(maxsize=4)
def load_encoded(path: Path) -> tuple[FloatArray, FloatArray]:
    """Read the CSV at `path` and encode it as the protocol says; cached per process.

    Args:
        path: a verified copy of the dataset file (see `dataset_path`).

    Returns:
        ``(x, y)``: features (2111, 16) in CSV column order with Weight all zero, and the label
        as ordinal codes 0..6; both float64 and read-only (they are shared by every caller).

    Raises:
        DataError: a column is missing, or a category value is not in the coding tables.
    """
    import pandas as pd

    frame = pd.read_csv(path)
    missing = [c for c in [*FEATURES, LABEL] if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}")

    columns: list[FloatArray] = []
    for column, codes in FEATURES.items():
        if column == ZEROED:
            columns.append(np.zeros(len(frame)))
        elif codes is None:
            columns.append(frame[column].to_numpy(dtype=np.float64))
        else:
            columns.append(_codes(frame[column], codes, column, path))
    x = np.stack(columns, axis=1)
    y = _codes(frame[LABEL], {name: i for i, name in enumerate(CLASSES)}, LABEL, path)
    x.flags.writeable = False
    y.flags.writeable = False
    return x, y


def _codes(values: Any, codes: Mapping[str, int], column: str, path: Path) -> FloatArray:
    """Map a pandas Series of category strings to float codes, rejecting unknown values."""
    mapped = values.map(codes)
    unknown = values[mapped.isna()]
    if len(unknown):
        raise DataError(
            f"{path}: column {column} has the unknown value {unknown.iloc[0]!r} "
            f"(known: {', '.join(codes)})"
        )
    result: FloatArray = mapped.to_numpy(dtype=np.float64)
    return result


def split_data(
    x: FloatArray,
    y: FloatArray,
    *,
    split_seed: int,
    train_fraction: float,
    val_fraction: float = 0.0,
    standardize: bool = False,
) -> Split:
    """Shuffle once with `split_seed` and cut into train, validation and test rows.

    The first ``int(train_fraction * n)`` shuffled rows are for training (1688 of 2111 at 0.8),
    the rest are the test set. With `val_fraction` > 0 the last
    ``round(val_fraction * n_train)`` of the training rows become the validation set. With
    `standardize`, every part is scaled by the mean and std of the rows left for training
    (a column with zero std, like Weight, keeps std 1).

    Returns:
        The split; new arrays, `x` and `y` are not modified.

    Raises:
        ValueError: the fractions leave no rows to train on or none to test on.
    """
    n = len(x)
    order = np.random.default_rng(split_seed).permutation(n)
    n_train = int(train_fraction * n)
    n_val = round(val_fraction * n_train)
    if n_train - n_val < 1 or n_train == n:
        raise ValueError(
            f"train_fraction={train_fraction} and val_fraction={val_fraction} leave "
            f"{n_train - n_val} training and {n - n_train} test rows of {n}; both must be >= 1"
        )
    train, test = order[: n_train - n_val], order[n_train:]
    val = order[n_train - n_val : n_train]
    x_train, x_val, x_test = x[train], x[val], x[test]
    if standardize:
        mean = x_train.mean(axis=0)
        std = x_train.std(axis=0)
        std[std == 0] = 1.0
        x_train, x_val, x_test = ((a - mean) / std for a in (x_train, x_val, x_test))
    return Split(x_train, y[train], x_val, y[val], x_test, y[test])


def load_split(params: ObesityParams, data_dir: Path) -> Split:
    """Fetch, encode and split the dataset as `params` say.

    Raises:
        DataError: the dataset is missing and cannot be fetched, or cannot be encoded.
    """
    x, y = load_encoded(dataset_path(data_dir))
    return split_data(
        x,
        y,
        split_seed=params.split_seed,
        train_fraction=params.train_fraction,
        val_fraction=params.val_fraction,
        standardize=params.standardize,
    )


def derive_seed(seed: int, purpose: str) -> int:
    """Return a 32-bit seed for one `purpose` ("init", "batches") of the trial seed `seed`.

    Derived by hashing rather than by offsets (seed + 1, ...), so that the streams of different
    purposes and neighbouring seeds never coincide.
    """
    return int(hashlib.sha256(f"{purpose}:{seed}".encode()).hexdigest()[:8], 16)


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


def check_finite(name: str, value: float, when: str) -> None:
    """Raise `TrialDiverged` when `value` is NaN or infinite.

    Args:
        name: what the value is, e.g. "train loss" or "test_mse".
        value: the value to check.
        when: where in training it was seen, e.g. "at epoch 17".

    Raises:
        TrialDiverged: with the message ``diverged: <name> became <value> <when>``, e.g.
            ``diverged: train loss became nan at epoch 17``.
    """
    if not math.isfinite(value):
        raise TrialDiverged(f"diverged: {name} became {value} {when}")


def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Mean squared error of `model` on ``(x, y)``, in eval mode and without gradients."""
    import torch

    was_training = model.training
    model.eval()
    with torch.no_grad():
        mse = torch.nn.functional.mse_loss(model(x), y).item()
    model.train(was_training)
    return mse


def train_one(
    params: ObesityParams,
    seed: int,
    data: Split,
    *,
    device: str = "cpu",
    heartbeat: Callable[[], None] = lambda: None,
    should_prune: Callable[[int, float], bool] | None = None,
) -> TrainResult:
    """Train one model on `data` and return its metrics and curves.

    Metrics: ``train_mse`` (on the rows trained on), ``test_mse``, and ``val_mse`` when there is
    a validation set. Curves, one value per epoch: ``train_loss`` (mean batch loss weighted by
    batch size, at the weights each batch saw) and ``val_mse``.

    The seed only varies the initial weights and the batch order (each from its own derived
    seed); the global torch RNG is not touched.

    Args:
        params: validated parameters.
        seed: the replicate seed.
        data: the split to train and evaluate on.
        device: torch device string.
        heartbeat: called once per epoch.
        should_prune: called after each epoch with (epoch, validation MSE) when there is a
            validation set; True stops training there: the result has `pruned_at` set and
            metrics ``train_mse``, ``val_mse`` and ``epoch`` (no test metric: a pruned trial is
            never judged on the test set).

    Raises:
        TrialDiverged: the epoch's training loss, or a final metric, is NaN or infinite.
    """
    import torch
    from torch.nn.functional import mse_loss

    from sweeper.optim import SAM, make_optimizer

    dtype = getattr(torch, params.dtype)

    def tensor(a: FloatArray) -> torch.Tensor:
        return torch.as_tensor(a, dtype=dtype, device=device)

    # Labels as (n, 1) to match the model's output; (n,) would broadcast to (n, n) in the loss.
    x_train, y_train = tensor(data.x_train), tensor(data.y_train).unsqueeze(1)
    x_val, y_val = tensor(data.x_val), tensor(data.y_val).unsqueeze(1)
    x_test, y_test = tensor(data.x_test), tensor(data.y_test).unsqueeze(1)
    n_train = len(x_train)
    has_val = len(x_val) > 0

    model = build_model(seed, params.dtype).to(device)
    model.train()
    optimizer = make_optimizer(
        params.optimizer,
        model.parameters(),
        lr=params.lr,
        weight_decay=params.weight_decay,
        momentum=params.momentum,
        sam_rho=params.sam_rho,
    )
    sam = optimizer if isinstance(optimizer, SAM) else None
    # The original code called scheduler.step() once, after training, so its learning rate was
    # constant: that is why the faithful protocol is "constant". "cosine" steps once per epoch.
    # With SAM the scheduler wraps the base optimizer, whose step is the one that runs.
    scheduler = (
        torch.optim.lr_scheduler.CosineAnnealingLR(
            sam.base_optimizer if sam else optimizer, T_max=params.cosine_t_max
        )
        if params.schedule == "cosine"
        else None
    )
    # Batch order from its own generator on the CPU: the same order on every device.
    batch_rng = torch.Generator().manual_seed(derive_seed(seed, "batches"))

    curves: dict[str, list[float]] = {"train_loss": []}
    if has_val:
        curves["val_mse"] = []
    for epoch in range(1, params.n_epochs + 1):
        perm = torch.randperm(n_train, generator=batch_rng).to(device)
        # Gather once per epoch, then slice contiguous batches: a third faster than a DataLoader.
        x_epoch, y_epoch = x_train[perm], y_train[perm]
        # Accumulated as a tensor, so the loss is read back once per epoch, not once per batch.
        loss_sum = torch.zeros((), dtype=dtype, device=device)
        for start in range(0, n_train, params.batch_size):
            xb = x_epoch[start : start + params.batch_size]
            yb = y_epoch[start : start + params.batch_size]
            if sam is None:
                optimizer.zero_grad(set_to_none=True)
                loss = mse_loss(model(xb), yb)
                loss.backward()  # type: ignore[no-untyped-call]  # torch leaves it unannotated
                optimizer.step()
            else:
                # SAM pass 1: gradient at w, then move to w + e (grads zeroed for pass 2).
                sam.zero_grad(set_to_none=True)
                loss = mse_loss(model(xb), yb)
                loss.backward()  # type: ignore[no-untyped-call]
                sam.first_step(zero_grad=True)
                # SAM pass 2: gradient at w + e; restore w and take the base step with it.
                mse_loss(model(xb), yb).backward()  # type: ignore[no-untyped-call]
                sam.second_step(zero_grad=True)
            loss_sum += loss.detach() * len(xb)
        train_loss = loss_sum.item() / n_train
        # NaN and inf survive the sum, so one check per epoch sees any diverged batch.
        check_finite("train loss", train_loss, f"at epoch {epoch}")
        curves["train_loss"].append(train_loss)
        if has_val:
            curves["val_mse"].append(evaluate(model, x_val, y_val))
            if should_prune is not None and should_prune(epoch, curves["val_mse"][-1]):
                metrics = {
                    "train_mse": evaluate(model, x_train, y_train),
                    "val_mse": curves["val_mse"][-1],
                    "epoch": float(epoch),
                }
                return TrainResult(metrics=metrics, curves=curves, pruned_at=epoch)
        if scheduler is not None:
            scheduler.step()
        heartbeat()

    metrics = {
        "train_mse": evaluate(model, x_train, y_train),
        "test_mse": evaluate(model, x_test, y_test),
    }
    if has_val:
        metrics["val_mse"] = evaluate(model, x_val, y_val)
    for name, value in metrics.items():
        check_finite(name, value, "after training")
    return TrainResult(metrics=metrics, curves=curves)


class ObesityTask:
    """The obesity task (see the module docstring); registered as "obesity"."""

    name: ClassVar[str] = "obesity"
    Params: ClassVar[type[BaseModel]] = ObesityParams
    # `run` trains a group as one stacked model when the context allows (obesity_batched).
    supports_batching: ClassVar[bool] = True
    #: val_mse only when val_fraction > 0.
    metrics: ClassVar[tuple[str, ...]] = ("test_mse", "train_mse", "val_mse")
    #: the per-epoch value a pruner judges (needs a validation split).
    validation_curve: ClassVar[str] = "val_mse"

    def pruning_problem(self, fixed: Mapping[str, Any]) -> str | None:
        """Pruning needs a validation split: never prune on the test set."""
        if float(fixed.get("val_fraction", 0.0)) <= 0:
            return (
                "pruning needs a validation split to judge epochs on (never the test set): "
                "set fixed.val_fraction, e.g. 0.15"
            )
        return None

    def group_key(self, params: Mapping[str, Any]) -> str:
        """Canonical JSON of the parameters a batched group must share.

        Members of a group may differ only in lr, weight_decay, sam_rho (all > 0 or all 0),
        momentum and seed; every other parameter, with defaults filled in, is in the key.

        Raises:
            StudyFileError: `params` break a rule that spans fields (the study file's per-field
                checks cannot see it), e.g. momentum with adam; one problem per broken rule.
        """
        try:
            p = ObesityParams.model_validate(dict(params))
        except ValidationError as exc:
            shown = canonical_json(dict(params))
            raise StudyFileError(
                [
                    f"parameters {shown}: {err['msg'].removeprefix('Value error, ')}"
                    for err in exc.errors()
                ]
            ) from None
        shared = p.model_dump(exclude={"lr", "weight_decay", "sam_rho", "momentum"})
        shared["sam"] = p.sam_rho > 0
        return canonical_json(shared)

    def check_data(self, params: Mapping[str, Any], data_dir: Path) -> None:
        """Fetch and verify the CSV, and encode it once so a bad file fails before any worker.

        Raises:
            DataError: the dataset is missing and cannot be fetched, fails its checksum, or holds
                values the encoding does not know.
        """
        load_encoded(dataset_path(data_dir))

    def member_bytes(self, params: Mapping[str, Any]) -> int:
        """Memory one member of a batched group needs (an over-estimate)."""
        from sweeper.tasks.obesity_batched import member_bytes

        p = ObesityParams.model_validate(dict(params))
        # The UCI file has 2,111 rows; the estimate needs no reading of it.
        return member_bytes(p, n_train=int(p.train_fraction * 2111))

    def run(self, trials: Sequence[TrialInput], ctx: RunContext) -> Iterator[TrialOutcome]:
        """Train the trials and yield each outcome as soon as it is done.

        With ``ctx.batched`` the group (even of one: a leftover trial is then computed the way
        its group was, and the C kernel makes that faster than a plain loop) is trained as one
        stacked model (`sweeper.tasks.obesity_batched`) and the outcomes come together at the
        end; otherwise one trial at a time. A diverged trial yields an outcome with
        ``error="diverged: ..."``; other exceptions propagate for the worker to record.

        Raises:
            DataError: the dataset is missing or invalid.
            pydantic.ValidationError: a trial's parameters are invalid.
        """
        params = [ObesityParams.model_validate(dict(t.params)) for t in trials]
        if ctx.batched:
            from sweeper.tasks.obesity_batched import train_group

            data = load_split(params[0], ctx.data_dir)
            members = [(p, t.seed) for p, t in zip(params, trials, strict=True)]
            results = train_group(members, data, device=ctx.device, heartbeat=ctx.heartbeat)
            for trial, result in zip(trials, results, strict=True):
                if isinstance(result, str):
                    yield TrialOutcome(trial_id=trial.trial_id, error=result)
                else:
                    yield TrialOutcome(
                        trial_id=trial.trial_id, metrics=result.metrics, curves=result.curves
                    )
            return
        for trial, p in zip(trials, params, strict=True):
            data = load_split(p, ctx.data_dir)
            trial_id = trial.trial_id

            def should_prune(epoch: int, value: float, trial_id: int = trial_id) -> bool:
                return ctx.should_prune(trial_id, epoch, value)

            try:
                result = train_one(
                    p,
                    trial.seed,
                    data,
                    device=ctx.device,
                    heartbeat=ctx.heartbeat,
                    should_prune=should_prune,
                )
            except TrialDiverged as exc:
                yield TrialOutcome(trial_id=trial_id, error=str(exc))
                continue
            yield TrialOutcome(
                trial_id=trial_id,
                metrics=result.metrics,
                curves=result.curves,
                pruned=result.pruned_at is not None,
            )
