"""The ECG domain-generalization task: leave one domain out, Baseline / AgeReg / SWA.

Follows `shared/protocols/ecg.md`. One trial trains a 1-D SEResNet34 on five of the six
PhysioNet/CinC 2021 domains and scores it on the held-out sixth (`target`). The modules follow
the data flow::

    params (EcgParams, DOMAINS)
    synth (write a synthetic six-domain set, drawn from sites) | real Challenge 2021 records
      -> loader (wfdb -> mV -> resample -> crop/pad -> labels, ages; cached as .npz)
      -> data (check_dataset, load_data, split_records: target = every record of the held-out
         domain; each source domain split into training and validation records by split_seed)
      -> model (build_model: the seeded SEResNet34)
      -> train (train_one: Adam, cosine to t_max, then flat or SWA) -> metrics
      -> task (EcgTask: what the worker calls) -> TrialOutcome

`classes` holds the 26 scored classes, their equivalence pairs and the Challenge weights;
`sites` the synthetic set's six domains (populations, label prevalence, devices).

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

from sweeper.tasks.ecg.task import EcgTask

__all__ = ["EcgTask"]
