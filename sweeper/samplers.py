"""Samplers and pruners of searched studies, by name: Optuna's, imported only when one is built.

A study's ``kind`` is ``grid`` or a key of `SAMPLERS`; its ``pruner`` a key of `PRUNERS`. A new
sampler or pruner is one entry here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from sweeper.registry import choose
from sweeper.seeds import derive_seed

if TYPE_CHECKING:
    import optuna

    from sweeper.study import Study


def _random(seed: int) -> optuna.samplers.BaseSampler:
    import optuna

    return optuna.samplers.RandomSampler(seed=seed)


def _tpe(seed: int) -> optuna.samplers.BaseSampler:
    import optuna

    # constant_liar: configurations still running count as bad guesses, so that workers
    # asking at the same time do not all propose the same neighbourhood.
    return optuna.samplers.TPESampler(seed=seed, constant_liar=True)


def _median() -> optuna.pruners.BasePruner:
    import optuna

    # Five finished configurations before judging, and not before epoch 5.
    return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=5)


def _halving() -> optuna.pruners.BasePruner:
    import optuna

    return optuna.pruners.SuccessiveHalvingPruner(min_resource=5, reduction_factor=3)


#: kind -> sampler factory (given its seed).
SAMPLERS: dict[str, Callable[[int], optuna.samplers.BaseSampler]] = {
    "random": _random,
    "tpe": _tpe,
}
#: pruner name -> factory.
PRUNERS: dict[str, Callable[[], optuna.pruners.BasePruner]] = {
    "halving": _halving,
    "median": _median,
}
#: every study kind: a grid lists its configurations; a sampler proposes the others'.
KINDS: tuple[str, ...] = ("grid", *SAMPLERS)


def make_sampler(study: Study, offset: int) -> optuna.samplers.BaseSampler:
    """The study's sampler, seeded by `sampler_seed` and `offset` (the proposals so far)."""
    seed = derive_seed(offset, str(study.sampler_seed))
    return choose("sampler", study.kind, SAMPLERS)(seed)


def make_pruner(study: Study) -> optuna.pruners.BasePruner:
    """The study's pruner (Optuna's median or successive-halving rule), or a no-op."""
    if study.pruner is None:
        import optuna

        return optuna.pruners.NopPruner()
    return choose("pruner", study.pruner, PRUNERS)()
