"""What training one trial of a model task gives: final metrics and per-epoch curves."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ModelResult:
    """One trial's outcome.

    Attributes:
        metrics: ``<split>_loss`` and ``<split>_<metric>`` for each split present, after the
            last epoch (model in eval mode, whole split at once).
        curves: ``train_loss`` (per epoch, the batch losses' mean weighted by batch size, taken
            during training) and, with a validation split, ``val_loss`` and ``val_<metric>``
            after each epoch.
    """

    metrics: dict[str, float] = field(default_factory=dict)
    curves: dict[str, list[float]] = field(default_factory=dict)
