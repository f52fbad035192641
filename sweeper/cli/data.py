"""`sweeper data`: datasets (the synthetic ECG set)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from sweeper.cli.app import app, command, err, out
from sweeper.cli.output import duration

data_app = typer.Typer(
    name="data",
    help="Datasets: generate the synthetic ECG set.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)
app.add_typer(data_app, name="data")


@command("synth-ecg", on=data_app)
def synth_ecg(
    out_dir: Annotated[
        Path,
        typer.Argument(
            help="Directory to write (new, empty, or an older synthetic set).", metavar="OUT"
        ),
    ],
    records_per_domain: Annotated[
        int, typer.Option(help="Records per domain (six domains).", min=1)
    ] = 100,
    seed: Annotated[int, typer.Option(help="Dataset seed.", min=0)] = 0,
    shift_strength: Annotated[
        float, typer.Option(help="Scale of the per-domain device shift (0: none).", min=0.0)
    ] = 1.0,
    prevalence_floor: Annotated[
        float,
        typer.Option(help="Least probability of every class in every domain.", min=0.0, max=0.49),
    ] = 0.1,
) -> None:
    """Write a SYNTHETIC six-domain 12-lead ECG dataset in the PhysioNet/CinC 2021 format
    (<Domain>/<id>.hea + .mat), deterministic in its options, for the ECG study.

    The ECG study reads it from <data dir>/ecg_synth (data dir: --data-dir, $SWEEPER_DATA_DIR,
    else ~/.cache/sweeper/data).

    Example: sweeper data synth-ecg ~/.cache/sweeper/data/ecg_synth --records-per-domain 100
    """
    import pandas as pd

    from sweeper import render
    from sweeper.tasks.ecg.synth import write_dataset

    def progress(domain: str, done: int) -> None:
        if done == records_per_domain:
            err.print(f"  {domain}: {done} records")

    started = time.time()
    report = write_dataset(
        out_dir,
        records_per_domain=records_per_domain,
        seed=seed,
        shift_strength=shift_strength,
        prevalence_floor=prevalence_floor,
        progress=progress,
    )
    frame = pd.DataFrame(report.class_counts).T.rename_axis("domain").reset_index()
    out.print(
        f"wrote {sum(report.records.values())} SYNTHETIC records ({len(report.records)} domains "
        f"x {records_per_domain}, seed {seed}) to {report.path}: {report.bytes / 1e6:.1f} MB "
        f"in {duration(time.time() - started)}. Records per class:"
    )
    out.print(render.rich_frame(frame))
