"""The 26 scored classes of PhysioNet/CinC 2021, their equivalence pairs, and the Challenge weights.

A class is one or more SNOMED-CT codes scored as one diagnosis: four pairs are merged
(CLBBB|LBBB, CRBBB|RBBB, PAC|SVPB, PVC|VPB), as ``evaluation-2021/weights.csv`` does. Class order
is the order of ``weights.csv``. Every code not listed is unscored and ignored.

`WEIGHTS` is the 26 x 26 reward matrix of the Challenge metric (1 on the diagonal, partial
credit in [0, 1) elsewhere). Its 24 x 24 block without BBB and PRWP is identical to the
24-class ``weights.csv`` of the ``physionetchallenges/evaluation-2021`` repository (checked
entry by entry); the rows of BBB (6374002) and PRWP (365413008) come from the 26-class
revision of that file as reproduced by the ``torch_ecg`` package's CinC 2021 auxiliary data.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sweeper.errors import UnknownNameError


@dataclass(frozen=True)
class EcgClass:
    """One scored class: its abbreviation and the SNOMED-CT codes that count as it."""

    abbreviation: str
    codes: tuple[str, ...]


#: the 26 scored classes in the order of ``weights.csv``.
SCORED: tuple[EcgClass, ...] = (
    EcgClass("AF", ("164889003",)),
    EcgClass("AFL", ("164890007",)),
    EcgClass("BBB", ("6374002",)),
    EcgClass("Brady", ("426627000",)),
    EcgClass("CLBBB|LBBB", ("733534002", "164909002")),
    EcgClass("CRBBB|RBBB", ("713427006", "59118001")),
    EcgClass("IAVB", ("270492004",)),
    EcgClass("IRBBB", ("713426002",)),
    EcgClass("LAD", ("39732003",)),
    EcgClass("LAnFB", ("445118002",)),
    EcgClass("LPR", ("164947007",)),
    EcgClass("LQRSV", ("251146004",)),
    EcgClass("LQT", ("111975006",)),
    EcgClass("NSIVCB", ("698252002",)),
    EcgClass("NSR", ("426783006",)),
    EcgClass("PAC|SVPB", ("284470004", "63593006")),
    EcgClass("PR", ("10370003",)),
    EcgClass("PRWP", ("365413008",)),
    EcgClass("PVC|VPB", ("427172004", "17338001")),
    EcgClass("QAb", ("164917005",)),
    EcgClass("RAD", ("47665007",)),
    EcgClass("SA", ("427393009",)),
    EcgClass("SB", ("426177001",)),
    EcgClass("STach", ("427084000",)),
    EcgClass("TAb", ("164934002",)),
    EcgClass("TInv", ("59931005",)),
)

#: the normal class: the always-normal classifier outputs it alone (the metric's zero point).
NORMAL = "NSR"

#: the nine classes the synthetic generator can produce (`synth`), in `SCORED` order.
SYNTHETIC_CLASSES: tuple[str, ...] = (
    "AF",
    "CLBBB|LBBB",
    "CRBBB|RBBB",
    "IAVB",
    "LQRSV",
    "NSR",
    "SB",
    "STach",
    "TAb",
)

#: class sets a study can choose with its ``classes`` parameter.
CLASS_SETS: dict[str, tuple[str, ...]] = {
    "scored26": tuple(c.abbreviation for c in SCORED),
    "synthetic9": SYNTHETIC_CLASSES,
}

# 26 x 26 numbers, row by row (a row may wrap over lines).
_WEIGHT_TEXT = """
1 0.5 0.475 0.3 0.475 0.4 0.3 0.3 0.35 0.35 0.3 0.425 0.45 0.35 0.25 0.3375 0.375 0.425
0.375 0.4 0.35 0.3 0.3 0.375 0.5 0.5
0.5 1 0.475 0.3 0.475 0.4 0.3 0.3 0.35 0.35 0.3 0.425 0.45 0.35 0.25 0.3375 0.375 0.425
0.375 0.4 0.35 0.3 0.3 0.375 0.5 0.5
0.475 0.475 1 0.325 0.475 0.425 0.325 0.325 0.375 0.375 0.325 0.45 0.475 0.375 0.275 0.3625
0.4 0.45 0.4 0.375 0.375 0.325 0.325 0.4 0.475 0.475
0.3 0.3 0.325 1 0.325 0.4 0.5 0.5 0.45 0.45 0.5 0.375 0.35 0.45 0.45 0.4625 0.425 0.375
0.425 0.2 0.45 0.5 0.5 0.425 0.3 0.3
0.475 0.475 0.475 0.325 1 0.425 0.325 0.325 0.375 0.375 0.325 0.45 0.475 0.375 0.275 0.3625
0.4 0.45 0.4 0.375 0.375 0.325 0.325 0.4 0.475 0.475
0.4 0.4 0.425 0.4 0.425 1 0.4 0.4 0.45 0.45 0.4 0.475 0.45 0.45 0.35 0.4375 0.475 0.475
0.475 0.3 0.45 0.4 0.4 0.475 0.4 0.4
0.3 0.3 0.325 0.5 0.325 0.4 1 0.5 0.45 0.45 0.5 0.375 0.35 0.45 0.45 0.4625 0.425 0.375
0.425 0.2 0.45 0.5 0.5 0.425 0.3 0.3
0.3 0.3 0.325 0.5 0.325 0.4 0.5 1 0.45 0.45 0.5 0.375 0.35 0.45 0.45 0.4625 0.425 0.375
0.425 0.2 0.45 0.5 0.5 0.425 0.3 0.3
0.35 0.35 0.375 0.45 0.375 0.45 0.45 0.45 1 0.5 0.45 0.425 0.4 0.5 0.4 0.4875 0.475 0.425
0.475 0.25 0.5 0.45 0.45 0.475 0.35 0.35
0.35 0.35 0.375 0.45 0.375 0.45 0.45 0.45 0.5 1 0.45 0.425 0.4 0.5 0.4 0.4875 0.475 0.425
0.475 0.25 0.5 0.45 0.45 0.475 0.35 0.35
0.3 0.3 0.325 0.5 0.325 0.4 0.5 0.5 0.45 0.45 1 0.375 0.35 0.45 0.45 0.4625 0.425 0.375
0.425 0.2 0.45 0.5 0.5 0.425 0.3 0.3
0.425 0.425 0.45 0.375 0.45 0.475 0.375 0.375 0.425 0.425 0.375 1 0.475 0.425 0.325 0.4125
0.45 0.475 0.45 0.325 0.425 0.375 0.375 0.45 0.425 0.425
0.45 0.45 0.475 0.35 0.475 0.45 0.35 0.35 0.4 0.4 0.35 0.475 1 0.4 0.3 0.3875 0.425 0.475
0.425 0.35 0.4 0.35 0.35 0.425 0.45 0.45
0.35 0.35 0.375 0.45 0.375 0.45 0.45 0.45 0.5 0.5 0.45 0.425 0.4 1 0.4 0.4875 0.475 0.425
0.475 0.25 0.5 0.45 0.45 0.475 0.35 0.35
0.25 0.25 0.275 0.45 0.275 0.35 0.45 0.45 0.4 0.4 0.45 0.325 0.3 0.4 1 0.4125 0.375 0.325
0.375 0.15 0.4 0.45 0.45 0.375 0.25 0.25
0.3375 0.3375 0.3625 0.4625 0.3625 0.4375 0.4625 0.4625 0.4875 0.4875 0.4625 0.4125 0.3875
0.4875 0.4125 1 0.4625 0.4125 0.4625 0.2375 0.4875 0.4625 0.4625 0.4625 0.3375 0.3375
0.375 0.375 0.4 0.425 0.4 0.475 0.425 0.425 0.475 0.475 0.425 0.45 0.425 0.475 0.375 0.4625
1 0.45 0.5 0.275 0.475 0.425 0.425 0.5 0.375 0.375
0.425 0.425 0.45 0.375 0.45 0.475 0.375 0.375 0.425 0.425 0.375 0.475 0.475 0.425 0.325
0.4125 0.45 1 0.45 0.325 0.425 0.375 0.375 0.45 0.425 0.425
0.375 0.375 0.4 0.425 0.4 0.475 0.425 0.425 0.475 0.475 0.425 0.45 0.425 0.475 0.375 0.4625
0.5 0.45 1 0.275 0.475 0.425 0.425 0.5 0.375 0.375
0.4 0.4 0.375 0.2 0.375 0.3 0.2 0.2 0.25 0.25 0.2 0.325 0.35 0.25 0.15 0.2375 0.275 0.325
0.275 1 0.25 0.2 0.2 0.275 0.4 0.4
0.35 0.35 0.375 0.45 0.375 0.45 0.45 0.45 0.5 0.5 0.45 0.425 0.4 0.5 0.4 0.4875 0.475 0.425
0.475 0.25 1 0.45 0.45 0.475 0.35 0.35
0.3 0.3 0.325 0.5 0.325 0.4 0.5 0.5 0.45 0.45 0.5 0.375 0.35 0.45 0.45 0.4625 0.425 0.375
0.425 0.2 0.45 1 0.5 0.425 0.3 0.3
0.3 0.3 0.325 0.5 0.325 0.4 0.5 0.5 0.45 0.45 0.5 0.375 0.35 0.45 0.45 0.4625 0.425 0.375
0.425 0.2 0.45 0.5 1 0.425 0.3 0.3
0.375 0.375 0.4 0.425 0.4 0.475 0.425 0.425 0.475 0.475 0.425 0.45 0.425 0.475 0.375 0.4625
0.5 0.45 0.5 0.275 0.475 0.425 0.425 1 0.375 0.375
0.5 0.5 0.475 0.3 0.475 0.4 0.3 0.3 0.35 0.35 0.3 0.425 0.45 0.35 0.25 0.3375 0.375 0.425
0.375 0.4 0.35 0.3 0.3 0.375 1 0.5
0.5 0.5 0.475 0.3 0.475 0.4 0.3 0.3 0.35 0.35 0.3 0.425 0.45 0.35 0.25 0.3375 0.375 0.425
0.375 0.4 0.35 0.3 0.3 0.375 0.5 1
"""

#: the Challenge reward matrix, rows and columns in `SCORED` order (read-only).
WEIGHTS: npt.NDArray[np.float64] = np.array(_WEIGHT_TEXT.split(), dtype=np.float64).reshape(26, 26)
WEIGHTS.flags.writeable = False

_BY_NAME = {c.abbreviation: k for k, c in enumerate(SCORED)}


def class_set(name: str) -> tuple[str, ...]:
    """The class abbreviations of the class set `name` (``scored26`` or ``synthetic9``).

    Raises:
        UnknownNameError: no class set of that name.
    """
    if name not in CLASS_SETS:
        raise UnknownNameError(
            f"unknown class set {name!r}; choose one of: {', '.join(sorted(CLASS_SETS))}"
        )
    return CLASS_SETS[name]


def weights_for(classes: Iterable[str]) -> npt.NDArray[np.float64]:
    """The Challenge weights restricted to `classes` (abbreviations), in their given order."""
    index = [_BY_NAME[c] for c in classes]
    return WEIGHTS[np.ix_(index, index)].copy()


def code_index(classes: Iterable[str]) -> dict[str, int]:
    """Map each SNOMED-CT code of `classes` to its class's position (equivalent codes share it)."""
    return {code: k for k, name in enumerate(classes) for code in SCORED[_BY_NAME[name]].codes}


def label_vector(codes: Iterable[str], classes: Iterable[str]) -> npt.NDArray[np.uint8]:
    """The 0/1 vector over `classes` of a record's ``#Dx`` codes; unscored codes are ignored.

    Records with no scored code get an all-zero vector (they are kept, as the tutorial's record
    counts suggest).
    """
    names = tuple(classes)
    index = code_index(names)
    vector = np.zeros(len(names), dtype=np.uint8)
    for code in codes:
        k = index.get(code.strip())
        if k is not None:
            vector[k] = 1
    return vector
