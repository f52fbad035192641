"""The ECG domain-generalization task: leave one domain out, Baseline / AgeReg / SWA.

Follows `shared/protocols/ecg.md`. One trial trains a 1-D SEResNet34 on five of the six
PhysioNet/CinC 2021 domains and scores it on the held-out sixth (`target`)::

    dataset dir -> sweeper.ecg.loader.load_dataset (decoded once, cached as .npz)
      -> split_records (target = every record of the held-out domain; each source domain
         split into training and validation records by split_seed)
      -> train_one (Adam, cosine to t_max, then flat or SWA) -> scores -> TrialOutcome

Methods: ``baseline`` (BCE), ``agereg`` (BCE + auxiliary_lambda x L1 on age in years, over the
records whose age is known; the age head starts at the mean training age), ``swa`` (the
baseline loss; after the cosine phase an `AveragedModel` collects one snapshot per epoch under
`SWALR`, and its BN statistics are recomputed with `update_bn` on the training data before it
is evaluated). The last-epoch model is evaluated (the averaged one for SWA); thresholds are
fixed (0.5), never tuned on the target.

Metrics, on the target domain: ``macro_f1`` (the primary score: macro F1 over the task's
classes at the threshold, a class absent and never predicted counting 0), ``macro_f1_present``
(only the classes the target has), ``challenge_score`` (the Challenge 2021 metric),
``macro_auroc``, ``age_mae`` (AgeReg only); on the sources' validation records:
``source_f1`` (the same macro F1: the in-domain score). Curves: ``train_loss`` and ``lr`` per
epoch.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from sweeper.ecg import DOMAINS
from sweeper.errors import DataError, StudyFileError, TrialDiverged
from sweeper.plan import canonical_json
from sweeper.tasks.base import RunContext, TrialInput, TrialOutcome

if TYPE_CHECKING:
    import torch

    from sweeper.ecg.loader import EcgData
    from sweeper.ecg.model import SEResNet34

Domain = Literal["Chapman", "CPSC", "CPSC-Extra", "G12EC", "Ningbo", "PTB-XL"]
IntArray = npt.NDArray[np.int64]

#: dataset -> directory under the data directory.
DATASET_DIRS = {"challenge2021": "challenge2021", "synthetic": "ecg_synth"}


class EcgParams(BaseModel):
    """Parameters of one ECG trial; the defaults are the tutorial's (real data, GPU sized)."""

    model_config = ConfigDict(extra="forbid")

    method: Literal["baseline", "agereg", "swa"] = "baseline"
    #: the held-out domain; the other five are the sources.
    target: Domain = "Chapman"
    #: ``challenge2021``: the real training sets under ``<data dir>/challenge2021``;
    #: ``synthetic``: the set ``sweeper data synth-ecg`` writes, under ``<data dir>/ecg_synth``.
    dataset: Literal["challenge2021", "synthetic"] = "challenge2021"
    classes: Literal["scored26", "synthetic9"] = "scored26"
    #: use only the first N records of each domain (0: all of them).
    records_per_domain: int = Field(default=0, ge=0)
    fs: int = Field(default=500, ge=10, le=2000)
    length: int = Field(default=5000, ge=64)
    #: per-record, per-lead z-score of the input (off in the tutorial).
    normalize: bool = False
    base_channels: int = Field(default=64, ge=4)
    epochs: int = Field(default=80, ge=1)
    #: the cosine phase: CosineAnnealingLR(T_max=t_max) stepped after epochs 1..t_max.
    t_max: int = Field(default=50, ge=1)
    lr: float = Field(default=1e-3, gt=0)
    eta_min: float = Field(default=1e-4, ge=0)
    weight_decay: float = Field(default=5e-5, ge=0)
    batch_size: int = Field(default=512, ge=2)
    auxiliary_lambda: float = Field(default=0.02, ge=0)
    swa_lr: float = Field(default=1e-2, gt=0)
    anneal_epochs: int = Field(default=10, ge=1)
    #: fraction of each source domain held out as in-domain validation records (source_f1).
    val_fraction: float = Field(default=0.1, ge=0, lt=1)
    split_seed: int = Field(default=0, ge=0)
    threshold: float = Field(default=0.5, gt=0, lt=1)

    @model_validator(mode="after")
    def _swa_needs_epochs_after_the_cosine(self) -> EcgParams:
        if self.method == "swa" and self.t_max >= self.epochs:
            raise ValueError(
                f"swa averages the epochs after t_max, but t_max={self.t_max} leaves none of "
                f"epochs={self.epochs}; make t_max < epochs"
            )
        return self


@dataclass(frozen=True)
class Split:
    """Record indices into the dataset arrays: training and validation (sources), target."""

    train: IntArray
    val: IntArray
    target: IntArray


@dataclass(frozen=True)
class TrainResult:
    """Metrics, per-epoch curves, and the model that was evaluated (the averaged one for SWA)."""

    metrics: dict[str, float]
    curves: dict[str, list[float]]
    model: torch.nn.Module


def dataset_root(params: EcgParams, data_dir: Path) -> Path:
    """The dataset directory for `params` under `data_dir`."""
    return data_dir / DATASET_DIRS[params.dataset]


def check_dataset(params: EcgParams, data_dir: Path) -> Path:
    """Return the dataset root after checking that the dataset is there.

    Raises:
        DataError: the directory is missing, or (synthetic) holds no complete synthetic set or
            fewer records per domain than the study uses; the message says what to run.
    """
    from sweeper.ecg.synth import GENERATOR_VERSION, is_synthetic, read_manifest

    root = dataset_root(params, data_dir)
    if params.dataset == "synthetic":
        if not is_synthetic(root):
            raise DataError(
                f"no synthetic ECG data at {root}; generate it with `sweeper data synth-ecg "
                f"{root}`, or point --data-dir (or SWEEPER_DATA_DIR) at a directory holding "
                f"ecg_synth/"
            )
        manifest = read_manifest(root)
        if manifest.get("version") != GENERATOR_VERSION:
            raise DataError(
                f"{root} was made by an older synthetic ECG generator (version "
                f"{manifest.get('version')}, this sweeper writes {GENERATOR_VERSION}); make it "
                f"again with `sweeper data synth-ecg {root}`"
            )
        have = manifest.get("records_per_domain")
        want = params.records_per_domain
        if isinstance(have, int) and want > have:
            raise DataError(
                f"{root} holds {have} synthetic records per domain; this study uses {want}: "
                f"run `sweeper data synth-ecg {root} --records-per-domain {want}`"
            )
    elif not root.is_dir():
        from sweeper.ecg.loader import DOMAIN_DIRS

        names = "; ".join(f"{d}: {' or '.join(n)}" for d, n in DOMAIN_DIRS.items())
        raise DataError(
            f"no PhysioNet/CinC 2021 training data at {root}: put the six training sets there, "
            f"one directory per domain ({names}), each holding <id>.hea and <id>.mat records; "
            f'or run on synthetic data (`sweeper data synth-ecg`, dataset = "synthetic")'
        )
    return root


def load_data(params: EcgParams, data_dir: Path) -> EcgData:
    """Load (or read back from the cache) the arrays `params` train and test on.

    Raises:
        DataError: see `check_dataset` and `sweeper.ecg.loader.load_dataset`.
    """
    from sweeper.ecg.classes import class_set
    from sweeper.ecg.loader import load_dataset

    root = check_dataset(params, data_dir)
    return load_dataset(
        root,
        domains=DOMAINS,
        classes=class_set(params.classes),
        fs=params.fs,
        length=params.length,
        records_per_domain=params.records_per_domain,
    )


def derive_seed(seed: int, purpose: str) -> int:
    """A 32-bit seed for one `purpose` of `seed`, by hashing (never by offsets)."""
    return int(hashlib.sha256(f"ecg:{purpose}:{seed}".encode()).hexdigest()[:8], 16)


def split_records(data: EcgData, target: str, *, val_fraction: float, split_seed: int) -> Split:
    """Hold out the target domain; split each source domain into training and validation.

    Each source domain's validation records are ``round(val_fraction * n)`` of its records,
    drawn with a generator seeded by `split_seed` and the domain's name, so a domain's
    validation records are the same in every round where it is a source.

    Raises:
        DataError: a source domain would keep no training record.
    """
    t = data.domains.index(target)
    train: list[IntArray] = []
    val: list[IntArray] = []
    for d, name in enumerate(data.domains):
        if d == t:
            continue
        rows = np.flatnonzero(data.domain == d)
        rng = np.random.default_rng(derive_seed(split_seed, f"split:{name}"))
        rows = rng.permutation(rows)
        n_val = round(val_fraction * len(rows))
        if n_val >= len(rows):
            raise DataError(f"val_fraction={val_fraction} leaves no training record of {name}")
        val.append(np.sort(rows[:n_val]))
        train.append(np.sort(rows[n_val:]))
    return Split(
        train=np.concatenate(train),
        val=np.concatenate(val),
        target=np.flatnonzero(data.domain == t),
    )


def build_model(n_classes: int, base_channels: int, seed: int) -> SEResNet34:
    """The SEResNet34 with PyTorch's default initialisation drawn from the trial seed."""
    import torch

    from sweeper.ecg.model import SEResNet34

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "init"))
        return SEResNet34(n_classes, base_channels)


class Schedule:
    """The tutorial's learning-rate rule, shared by training and `lr_schedule`.

    ``CosineAnnealingLR(T_max=t_max, eta_min)`` is stepped after each epoch while
    ``epoch <= t_max``; after that the LR stays at eta_min, except with SWA, where `SWALR`
    (cosine anneal over `anneal_epochs` from the current LR up to `swa_lr`) is stepped after each
    later epoch, and that epoch's weights join the average. Both schedulers are built before
    training, as in the tutorial; SWALR's construction leaves the LR unchanged.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, params: EcgParams) -> None:
        from torch.optim.lr_scheduler import CosineAnnealingLR
        from torch.optim.swa_utils import SWALR

        self.t_max = params.t_max
        self.cosine = CosineAnnealingLR(optimizer, T_max=params.t_max, eta_min=params.eta_min)
        self.swa = (
            SWALR(
                optimizer,
                swa_lr=params.swa_lr,
                anneal_epochs=params.anneal_epochs,
                anneal_strategy="cos",
            )
            if params.method == "swa"
            else None
        )

    def end_epoch(self, epoch: int) -> bool:
        """Step the schedule after `epoch` (1-based); True when its weights join the average."""
        if epoch <= self.t_max:
            self.cosine.step()
            return False
        if self.swa is not None:
            self.swa.step()
            return True
        return False


def lr_schedule(params: EcgParams) -> list[float]:
    """The learning rate each epoch trains at under `params` (no training: a replay)."""
    import torch

    weight = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.Adam([weight], lr=params.lr, weight_decay=params.weight_decay)
    schedule = Schedule(optimizer, params)
    lrs = []
    for epoch in range(1, params.epochs + 1):
        lrs.append(float(optimizer.param_groups[0]["lr"]))
        optimizer.step()  # keeps PyTorch's "scheduler before optimizer" check quiet
        schedule.end_epoch(epoch)
    return lrs


def train_one(
    params: EcgParams,
    seed: int,
    data: EcgData,
    *,
    device: str = "cpu",
    heartbeat: Callable[[], None] = lambda: None,
) -> TrainResult:
    """Train one model on the sources of `data` and score it on the target domain.

    The seed drives the initial weights, the batch order and dropout, each from its own
    derived seed; the global torch RNG is restored afterwards.

    Raises:
        TrialDiverged: an epoch's training loss is NaN or infinite.
        DataError: the split leaves a source domain without training records.
    """
    import torch
    import torch.nn.functional as F
    from torch.optim.swa_utils import AveragedModel, update_bn

    from sweeper.ecg.classes import NORMAL

    split = split_records(
        data, params.target, val_fraction=params.val_fraction, split_seed=params.split_seed
    )
    x_train = _inputs(data, split.train, params.normalize).to(device)
    y_train = torch.as_tensor(data.y[split.train], dtype=torch.float32, device=device)
    age_train = torch.as_tensor(data.age[split.train], dtype=torch.float32, device=device)
    n_train = len(split.train)

    model = build_model(len(data.classes), params.base_channels, seed).to(device)
    known_age = age_train[torch.isfinite(age_train) & (age_train >= 0)]
    if params.method == "agereg" and len(known_age):
        # Start the age head at the mean training age. From PyTorch's init (about 0 years) the
        # L1 gradient only pulls every output up, carrying no age information, until the head
        # reaches the mean: the tutorial's ~11,000 Adam steps get there, a CPU schedule of a
        # few hundred does not.
        model.set_age_offset(float(known_age.mean()))
    optimizer = torch.optim.Adam(model.parameters(), lr=params.lr, weight_decay=params.weight_decay)
    schedule = Schedule(optimizer, params)
    swa_model = AveragedModel(model) if params.method == "swa" else None
    batch_rng = torch.Generator().manual_seed(derive_seed(seed, "batches"))
    curves: dict[str, list[float]] = {"train_loss": [], "lr": []}

    with torch.random.fork_rng(devices=[]):
        # Dropout draws from the global RNG: seed it here, restore it on the way out.
        torch.manual_seed(derive_seed(seed, "dropout"))
        for epoch in range(1, params.epochs + 1):
            model.train()
            curves["lr"].append(float(optimizer.param_groups[0]["lr"]))
            order = torch.randperm(n_train, generator=batch_rng).to(device)
            loss_sum = torch.zeros((), device=device)
            for start in range(0, n_train, params.batch_size):
                rows = order[start : start + params.batch_size]
                logits, age_pred = model(x_train[rows])
                loss = F.binary_cross_entropy_with_logits(logits, y_train[rows])
                if params.method == "agereg":
                    loss = loss + params.auxiliary_lambda * _age_l1(age_pred, age_train[rows])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()  # type: ignore[no-untyped-call]  # torch leaves it unannotated
                optimizer.step()
                loss_sum += loss.detach() * len(rows)
            train_loss = loss_sum.item() / n_train
            if not math.isfinite(train_loss):
                raise TrialDiverged(f"diverged: train loss became {train_loss} at epoch {epoch}")
            curves["train_loss"].append(train_loss)
            if schedule.end_epoch(epoch) and swa_model is not None:
                swa_model.update_parameters(model)
            heartbeat()

        evaluated: torch.nn.Module = model
        if swa_model is not None:
            # AveragedModel averages parameters only: its BN statistics are still those of the
            # initial weights. Recompute them on the training data (update_bn feeds the model
            # the first element of each batch; here each batch is the ECG tensor itself).
            batches = [
                x_train[s : s + params.batch_size] for s in range(0, n_train, params.batch_size)
            ]
            update_bn(batches, swa_model, device=torch.device(device))
            evaluated = swa_model

    target_scores, target_age = _predict(
        evaluated, _inputs(data, split.target, params.normalize), device
    )
    y_target = data.y[split.target]
    metrics = _scores(y_target, target_scores, params.threshold)
    if NORMAL in data.classes:
        from sweeper.ecg.metrics import challenge_score

        metrics["challenge_score"] = challenge_score(
            y_target, target_scores >= params.threshold, data.classes
        )
    if params.method == "agereg":
        from sweeper.ecg.metrics import age_mae

        metrics["age_mae"] = age_mae(data.age[split.target], target_age)
    if len(split.val):
        from sweeper.ecg.metrics import macro_f1

        val_scores, _ = _predict(evaluated, _inputs(data, split.val, params.normalize), device)
        metrics["source_f1"] = macro_f1(data.y[split.val], val_scores >= params.threshold)
    metrics["train_loss"] = curves["train_loss"][-1]
    finite = {k: v for k, v in metrics.items() if math.isfinite(v)}
    return TrainResult(metrics=finite, curves=curves, model=evaluated)


def _inputs(data: EcgData, rows: IntArray, normalize: bool) -> torch.Tensor:
    """The float32 signals of `rows` (a copy), z-scored per record and lead when asked."""
    import torch

    x = data.x[rows].astype(np.float32)
    if normalize:
        mean = x.mean(axis=2, keepdims=True)
        std = x.std(axis=2, keepdims=True)
        x = (x - mean) / np.where(std > 1e-6, std, 1.0)
    return torch.from_numpy(x)


def _age_l1(predicted: torch.Tensor, age: torch.Tensor) -> torch.Tensor:
    """L1 between predicted and true age (years) over the records whose age is known (>= 0).

    A batch without any known age contributes 0 (and no gradient).
    """
    import torch
    import torch.nn.functional as F

    known = torch.isfinite(age) & (age >= 0)
    if not bool(known.any()):
        return predicted.sum() * 0.0
    return F.l1_loss(predicted[known], age[known])


def _predict(
    model: torch.nn.Module, x: torch.Tensor, device: str, batch: int = 256
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Sigmoid class probabilities and age predictions, in eval mode and without gradients."""
    import torch

    model.eval()
    probs, ages = [], []
    with torch.no_grad():
        for start in range(0, len(x), batch):
            logits, age = model(x[start : start + batch].to(device))
            probs.append(torch.sigmoid(logits).double().cpu().numpy())
            ages.append(age.double().cpu().numpy())
    return np.concatenate(probs), np.concatenate(ages)


def _scores(
    labels: npt.NDArray[np.uint8], scores: npt.NDArray[np.float64], threshold: float
) -> dict[str, float]:
    """The threshold-based and ranking scores of one evaluation set."""
    from sweeper.ecg.metrics import macro_auroc, macro_f1

    outputs = scores >= threshold
    return {
        "macro_f1": macro_f1(labels, outputs),
        "macro_f1_present": macro_f1(labels, outputs, present_only=True),
        "macro_auroc": macro_auroc(labels, scores),
    }


class EcgTask:
    """The ECG task (see the module docstring); registered as "ecg"."""

    name: ClassVar[str] = "ecg"
    Params: ClassVar[type[BaseModel]] = EcgParams
    # A group of one model per trial; ECG models are too large to stack usefully on a CPU.
    supports_batching: ClassVar[bool] = False
    metrics: ClassVar[tuple[str, ...]] = (
        "macro_f1",
        "macro_f1_present",
        "challenge_score",
        "macro_auroc",
        "age_mae",
        "source_f1",
        "train_loss",
    )

    def group_key(self, params: Mapping[str, Any]) -> str:
        """Every trial is its own group (no batching); validates cross-field rules.

        Raises:
            StudyFileError: `params` break a rule spanning fields (e.g. swa with t_max >= epochs).
        """
        try:
            p = EcgParams.model_validate(dict(params))
        except ValidationError as exc:
            shown = canonical_json(dict(params))
            raise StudyFileError(
                [
                    f"parameters {shown}: {err['msg'].removeprefix('Value error, ')}"
                    for err in exc.errors()
                ]
            ) from None
        return canonical_json(p.model_dump())

    def member_bytes(self, params: Mapping[str, Any]) -> int:
        """Not batched; a rough per-trial size (parameters and Adam state, float32)."""
        p = EcgParams.model_validate(dict(params))
        return int(16.8e6 * (p.base_channels / 64) ** 2) * 4 * 4

    def check_data(self, params: Mapping[str, Any], data_dir: Path) -> None:
        """Check the dataset and decode it once into the cache, before any worker starts.

        Raises:
            DataError: the dataset is missing (the message says how to get it) or unreadable.
        """
        load_data(EcgParams.model_validate(dict(params)), data_dir)

    def run(self, trials: Sequence[TrialInput], ctx: RunContext) -> Iterator[TrialOutcome]:
        """Train the trials one at a time and yield each outcome as soon as it is done.

        A diverged trial yields an outcome with ``error="diverged: ..."``; other exceptions
        propagate for the worker to record.
        """
        for trial in trials:
            p = EcgParams.model_validate(dict(trial.params))
            data = load_data(p, ctx.data_dir)
            try:
                result = train_one(p, trial.seed, data, device=ctx.device, heartbeat=ctx.heartbeat)
            except TrialDiverged as exc:
                yield TrialOutcome(trial_id=trial.trial_id, error=str(exc))
                continue
            yield TrialOutcome(
                trial_id=trial.trial_id, metrics=result.metrics, curves=result.curves
            )


__all__ = ["EcgParams", "EcgTask", "Schedule", "lr_schedule", "split_records", "train_one"]
