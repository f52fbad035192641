"""`sweeper export`: a study's trials as csv, tsv, json or parquet, or its configurations as
an Optuna storage; the format follows --output's extension unless --format is given."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Literal

import typer

from sweeper.cli.app import DbOpt, command
from sweeper.cli.output import open_store
from sweeper.errors import SweeperError

#: `sweeper export`'s formats; an --output file's extension picks one (`EXTENSIONS`).
ExportFormat = Literal["csv", "tsv", "json", "parquet", "optuna"]
#: extension of --output -> the export format written when --format is not given.
EXTENSIONS: dict[str, ExportFormat] = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".json": "json",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".db": "optuna",
    ".sqlite": "optuna",
    ".sqlite3": "optuna",
}


@command()
def export(
    name: Annotated[str, typer.Argument(help="Study name.")],
    db: DbOpt = None,
    fmt: Annotated[
        ExportFormat | None,
        typer.Option(
            "--format",
            "-f",
            help="csv, tsv, json, parquet, or optuna: an Optuna storage for optuna-dashboard "
            "(-o FILE.db, or --to URL). Default: from --output's extension (.csv, .tsv, "
            ".json, .parquet/.pq, .db/.sqlite/.sqlite3), else csv.",
            show_default=False,
        ),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File to write (default: stdout).")
    ] = None,
    to: Annotated[
        str | None,
        typer.Option(
            help="--format optuna: any SQLAlchemy URL to write to instead of a SQLite file.",
            show_default=False,
        ),
    ] = None,
    curves: Annotated[
        bool,
        typer.Option(
            help="Include per-epoch curves (json), or their seed means as intermediate values "
            "(optuna; slower: Optuna writes them one row at a time)."
        ),
    ] = False,
) -> None:
    """Export every trial of a study: parameters, seed, state, metrics, timing, host; or, with
    --format optuna, one Optuna trial per configuration (its value the seed mean) that
    optuna-dashboard and Optuna's plots can open. The format follows --output's extension
    unless --format is given.

    Example: sweeper export obesity -o obesity.parquet

    Example: sweeper export obesity -o optuna.db
    """
    if output is not None and output.is_dir():
        raise SweeperError(
            f"--output {output} is a folder: give a file, e.g. {output / name}.{fmt or 'csv'}"
        )
    if output is not None and not output.parent.is_dir():
        raise SweeperError(f"--output {output}: no folder {output.parent}; create it first")
    fmt = export_format(fmt, output, to)
    if fmt == "optuna":
        export_optuna_storage(db, name, output, to, curves)
        return
    if to is not None:
        raise SweeperError("--to is for --format optuna; give a file with --output FILE")
    if fmt == "parquet" and output is None:
        raise SweeperError("parquet is binary: give a file with --output FILE")
    if curves and fmt != "json":
        raise SweeperError(
            "--curves needs --format json (curves are lists per trial) or --format optuna"
        )
    if fmt == "parquet":
        from sweeper.extras import require

        require("pyarrow", extra="parquet", purpose="parquet export")
    with open_store(db) as store:
        info = store.study(name)
        frame = store.frame(info.id)
        if curves:
            by_id = store.curves(frame["id"].tolist())
            frame["curves"] = [by_id.get(i) for i in frame["id"]]
    frame.insert(0, "study", info.name)
    if fmt == "parquet":
        assert output is not None  # checked above
        frame.to_parquet(output, index=False, engine="pyarrow")
        _wrote(len(frame), output)
        return
    if fmt in ("csv", "tsv"):
        text = frame.to_csv(index=False, sep="," if fmt == "csv" else "\t")
    else:
        text = frame.to_json(orient="records", indent=1) + "\n"
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")
        _wrote(len(frame), output)


def _wrote(count: int, output: Path) -> None:
    # Plain text: Rich would wrap a long path and read brackets in it as markup.
    sys.stderr.write(f"wrote {count} trials to {output}\n")


def export_format(fmt: ExportFormat | None, output: Path | None, to: str | None) -> ExportFormat:
    """The export format: `fmt` when given, else --output's extension (`EXTENSIONS`), else
    optuna with --to and csv on stdout.

    Raises:
        SweeperError: --output has an extension that names no format (and no --format).
    """
    if fmt is not None:
        return fmt
    if output is not None:
        found = EXTENSIONS.get(output.suffix.lower())
        if found is None:
            raise SweeperError(
                f"cannot tell the export format from {output.name!r}: give --format, or a file "
                f"ending in {', '.join(EXTENSIONS)}"
            )
        return found
    return "optuna" if to is not None else "csv"


def export_optuna_storage(
    db: str | None, name: str, output: Path | None, to: str | None, curves: bool
) -> None:
    """`sweeper export NAME --format optuna`: write the Optuna storage, say how to open it."""
    from sweeper.optuna_export import export_optuna
    from sweeper.store import safe_url

    if (output is None) == (to is None):
        raise SweeperError(
            "--format optuna writes an Optuna storage: give a SQLite file with --output "
            "optuna.db, or a SQLAlchemy URL with --to (one of them)"
        )
    if output is not None:
        check_optuna_file(output)
    url = to if to is not None else f"sqlite:///{output}"
    with open_store(db) as store:
        count = export_optuna(store, name, url, intermediate=curves)
    shown = safe_url(url)
    lines = [f"wrote {count} configurations of {name} to {shown}: one Optuna trial each"]
    if not curves:
        lines.append("per-epoch intermediate values left out: add --curves for them (slower)")
    lines.append(f"open it with: pip install optuna-dashboard; optuna-dashboard {shown}")
    # Plain text: a URL that a console wrapped or read as markup could not be pasted.
    sys.stderr.write("".join(line + "\n" for line in lines))


def check_optuna_file(path: Path) -> None:
    """Refuse to add Optuna's tables to a SQLite file that holds something else (a results
    database given by mistake); a new file or an Optuna storage is fine.

    Raises:
        SweeperError: `path` is a SQLite file with tables and no Optuna ``version_info``.
    """
    import sqlite3

    if not path.is_file() or path.stat().st_size == 0:
        return
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    except sqlite3.DatabaseError:
        tables = {"(not SQLite)"}
    finally:
        conn.close()
    if tables and "version_info" not in tables:
        raise SweeperError(
            f"{path} exists and is not an Optuna storage; give a new file, e.g. -o optuna.db"
        )
