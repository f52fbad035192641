"""The ECG domain-generalization study: PhysioNet/CinC 2021 records, six source domains.

`shared/protocols/ecg.md` is the specification. The modules follow the data flow::

    synth (write a synthetic six-domain set)  |  real Challenge 2021 records
      -> loader (wfdb -> mV -> resample -> crop/pad -> labels, ages; cached as .npz)
      -> model (1-D SEResNet34) -> sweeper.tasks.ecg (train one trial) -> metrics

`classes` holds the 26 scored classes, their equivalence pairs and the Challenge weights;
`sites` the synthetic set's six domains (populations, label prevalence, devices).
"""

from __future__ import annotations

#: the six source domains of the tutorial, in its table order (Challenge 2021 training sets).
DOMAINS: tuple[str, ...] = ("Chapman", "CPSC", "CPSC-Extra", "G12EC", "Ningbo", "PTB-XL")

__all__ = ["DOMAINS"]
