"""A model task's data: train / validation / test tensors, from whatever the user gave.

The user's ``data`` is a `Splits`, a ``(x, y)`` pair (training only), a sequence of up to three
pairs ``(train, val, test)`` (None for a missing split), a mapping with the keys ``train``,
``val``, ``test``, or a callable ``data(params)`` returning any of these. Floating-point
tensors are cast to the spec's dtype; integer targets (class indices) are kept.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sweeper.errors import SweeperError

if TYPE_CHECKING:
    import torch

#: the split names, in order.
SPLITS: tuple[str, ...] = ("train", "val", "test")

Pair = tuple["torch.Tensor", "torch.Tensor"]


class ModelDataError(SweeperError):
    """The data of a model task is not in a form sweeper understands; the message says why."""


@dataclass(frozen=True)
class Splits:
    """Inputs and targets per split; `val` and `test` may be missing."""

    train: Pair
    val: Pair | None = None
    test: Pair | None = None

    def present(self) -> Iterator[tuple[str, Pair]]:
        """``(name, (x, y))`` of each split that exists, in `SPLITS` order."""
        for name in SPLITS:
            pair = getattr(self, name)
            if pair is not None:
                yield name, pair


def as_splits(value: Any, dtype: torch.dtype) -> Splits:
    """`value` (see the module docstring; not a callable) as `Splits` of tensors.

    Raises:
        ModelDataError: an unknown form, a pair that is not two tensors of equal length, or
            no training split.
    """
    if isinstance(value, Splits):
        pairs: list[Any] = [value.train, value.val, value.test]
    elif isinstance(value, Mapping):
        unknown = sorted(set(value) - set(SPLITS))
        if unknown:
            raise ModelDataError(f"data has unknown splits {unknown}; use train, val, test")
        pairs = [value.get(name) for name in SPLITS]
    elif isinstance(value, Sequence) and len(value) == 2 and not _is_pair_of_pairs(value):
        pairs = [value, None, None]
    elif isinstance(value, Sequence) and 1 <= len(value) <= 3:
        pairs = [*value, *([None] * (3 - len(value)))]
    else:
        raise ModelDataError(
            "data must be (x, y), (train, val, test) pairs, a dict of them, or Splits "
            f"(got {type(value).__name__})"
        )
    train, val, test = (_pair(p, name, dtype) for p, name in zip(pairs, SPLITS, strict=True))
    if train is None:
        raise ModelDataError("data has no training split")
    return Splits(train, val, test)


def _is_pair_of_pairs(value: Sequence[Any]) -> bool:
    return all(v is None or (isinstance(v, Sequence) and not hasattr(v, "shape")) for v in value)


def _pair(value: Any, name: str, dtype: torch.dtype) -> Pair | None:
    import torch

    if value is None:
        return None
    if not isinstance(value, Sequence) or len(value) != 2:
        raise ModelDataError(f"data split {name!r} must be a pair (x, y)")
    x, y = (torch.as_tensor(v) for v in value)
    if len(x) != len(y):
        raise ModelDataError(f"data split {name!r}: x has {len(x)} rows but y has {len(y)}")
    if len(x) == 0:
        raise ModelDataError(f"data split {name!r} is empty")
    x = x.to(dtype) if x.is_floating_point() else x
    y = y.to(dtype) if y.is_floating_point() else y
    return x, y
