"""The ECG task's parameters: `EcgParams` (defaults: the tutorial's, real data, GPU sized)."""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import Field, model_validator

from sweeper.tasks.common import TaskParams

#: a domain: one of the six Challenge 2021 training sets.
Domain = Literal["Chapman", "CPSC", "CPSC-Extra", "G12EC", "Ningbo", "PTB-XL"]
#: the six source domains of the tutorial, in its table order.
DOMAINS: tuple[str, ...] = get_args(Domain)


#: upper bounds that only catch mistakes, never a real protocol (the tutorial: 80 epochs,
#: batches of 512, 10 s records at 500 Hz, 64 base channels).
MAX_EPOCHS = 10_000
MAX_BATCH_SIZE = 65_536
MAX_LENGTH = 1_000_000
MAX_CHANNELS = 1024


class EcgParams(TaskParams):
    """Parameters of one ECG trial; the defaults are the tutorial's (real data, GPU sized)."""

    method: Literal["baseline", "agereg", "swa"] = "baseline"
    #: the held-out domain; the other five are the sources.
    target: Domain = "Chapman"
    #: ``challenge2021``: the real training sets under ``<data dir>/challenge2021``;
    #: ``synthetic``: the set ``sweeper data synth-ecg`` writes, under ``<data dir>/ecg_synth``.
    dataset: Literal["challenge2021", "synthetic"] = "challenge2021"
    classes: Literal["scored26", "synthetic9"] = "scored26"
    #: use only the first N records of each domain (0: all of them).
    records_per_domain: int = Field(default=0, ge=0, le=10_000_000)
    fs: int = Field(default=500, ge=10, le=2000)
    length: int = Field(default=5000, ge=64, le=MAX_LENGTH)
    #: per-record, per-lead z-score of the input (off in the tutorial).
    normalize: bool = False
    base_channels: int = Field(default=64, ge=4, le=MAX_CHANNELS)
    epochs: int = Field(default=80, ge=1, le=MAX_EPOCHS)
    #: the cosine phase: CosineAnnealingLR(T_max=t_max) stepped after epochs 1..t_max.
    t_max: int = Field(default=50, ge=1, le=MAX_EPOCHS)
    lr: float = Field(default=1e-3, gt=0)
    eta_min: float = Field(default=1e-4, ge=0)
    weight_decay: float = Field(default=5e-5, ge=0)
    batch_size: int = Field(default=512, ge=2, le=MAX_BATCH_SIZE)
    auxiliary_lambda: float = Field(default=0.02, ge=0)
    swa_lr: float = Field(default=1e-2, gt=0)
    anneal_epochs: int = Field(default=10, ge=1, le=MAX_EPOCHS)
    #: fraction of each source domain held out as in-domain validation records (source_f1).
    val_fraction: float = Field(default=0.1, ge=0, lt=1)
    split_seed: int = Field(default=0, ge=0, lt=2**31)
    threshold: float = Field(default=0.5, gt=0, lt=1)

    @model_validator(mode="after")
    def _swa_needs_epochs_after_the_cosine(self) -> EcgParams:
        if self.method == "swa" and self.t_max >= self.epochs:
            raise ValueError(
                f"swa averages the epochs after t_max, but t_max={self.t_max} leaves none of "
                f"epochs={self.epochs}; make t_max < epochs"
            )
        return self
