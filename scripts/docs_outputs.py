"""Check (or rewrite) the command outputs shown in README.md and docs/**/*.md.

A fenced code block whose first line is ``$ sweeper ...`` shows that command and, below it, its
output. For a read-only query (table, best, compare, seeds, studies, runs, status, show, tasks)
this script runs the command against a temporary copy of results.db (the shipped database is
never opened) and compares what it prints on stdout with the block's lines after the command:

    python scripts/docs_outputs.py            # --check: a diff per stale block, exit 1 if any
    python scripts/docs_outputs.py --write    # rewrite the stale blocks in place

The command runs as ``python -m sweeper ARGS --db COPY`` (a ``--db`` the command names is
replaced by the copy), with COLUMNS=120, NO_COLOR=1 and stdout a pipe, from the repository root.
Trailing spaces are ignored.

Blocks that are not checked, and said so in the report:

- skipped: a block with other ``$ `` commands in it (``$ cp ...``), or a command that writes
  the database or takes long (run, confirm, resume, worker, delete, importance, ...);
- abridged: a block preceded by the marker ``<!-- output: abridged -->`` shows part of the
  output on purpose. It is never rewritten; its lines must still occur in the output, in order
  (a line ``...`` is skipped, and ``...`` inside a line matches any text), else it is stale too.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ABRIDGED = "<!-- output: abridged -->"
# Subcommands that only read the database and answer in seconds.
READ_ONLY = frozenset(
    {"table", "best", "compare", "seeds", "studies", "runs", "status", "show", "tasks"}
)
GLOBAL_WITH_VALUE = frozenset({"--precision"})
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
TIMEOUT_S = 120

Runner = Callable[[Sequence[str]], "Result"]


@dataclass(frozen=True)
class Result:
    """What one command printed."""

    returncode: int
    stdout: str
    stderr: str


@dataclass
class Block:
    """A fenced code block whose lines include a ``$ sweeper`` command."""

    path: Path
    start: int  # index of the opening fence line in the file's lines
    end: int  # index of the closing fence line
    indent: str
    lines: list[str]  # the content, indentation removed
    abridged: bool

    @property
    def where(self) -> str:
        try:
            shown = self.path.relative_to(ROOT)
        except ValueError:
            shown = self.path
        return f"{shown}:{self.start + 2}"

    @property
    def command(self) -> str:
        return self.lines[0][2:].strip()

    @property
    def shown(self) -> list[str]:
        return [line.rstrip() for line in self.lines[1:]]


@dataclass
class Outcome:
    block: Block
    status: str  # ok | stale | skipped | error
    note: str = ""
    expected: list[str] = field(default_factory=list)  # what the command printed


@dataclass
class Report:
    outcomes: list[Outcome]

    def having(self, status: str) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == status]

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status in ("stale", "error")]


def markdown_files(root: Path = ROOT) -> list[Path]:
    """README.md and every page of docs/."""
    return [root / "README.md", *sorted((root / "docs").rglob("*.md"))]


def find_blocks(path: Path, text: str | None = None) -> list[Block]:
    """The fenced blocks of a markdown file that contain a ``$ sweeper`` line."""
    lines = (path.read_text(encoding="utf-8") if text is None else text).splitlines()
    blocks = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence = m["indent"], m["fence"]
        close = re.compile(rf"^{re.escape(indent)}{fence[0]}{{{len(fence)},}}\s*$")
        j = i + 1
        while j < len(lines) and not close.match(lines[j]):
            j += 1
        content = [
            line[len(indent) :] if line.startswith(indent) else line for line in lines[i + 1 : j]
        ]
        if any(line.startswith("$ sweeper ") for line in content):
            before = next((lines[k].strip() for k in range(i - 1, -1, -1) if lines[k].strip()), "")
            blocks.append(Block(path, i, j, indent, content, before == ABRIDGED))
        i = j + 1
    return blocks


def plan(block: Block, db: Path) -> list[str] | str:
    """The argv after ``python -m sweeper`` for a block, or why it is skipped."""
    commands = [line for line in block.lines if line.startswith("$ ")]
    if not block.lines[0].startswith("$ sweeper ") or len(commands) > 1:
        return "several commands: " + "; ".join(c[2:] for c in commands)
    try:
        args = shlex.split(block.command)[1:]
    except ValueError as e:
        return f"cannot parse the command: {e}"
    sub, i = None, 0
    while i < len(args):
        if args[i] in GLOBAL_WITH_VALUE:
            i += 2
            continue
        if not args[i].startswith("-"):
            sub = args[i]
            break
        i += 1
    if sub not in READ_ONLY:
        return f"'sweeper {sub}' is not a read-only query"
    out, given = [], False
    i = 0
    while i < len(args):
        arg = args[i]
        value = None
        if arg == "--db" and i + 1 < len(args):
            value, i = args[i + 1], i + 2
        elif arg.startswith("--db="):
            value, i = arg.split("=", 1)[1], i + 1
        else:
            out.append(arg)
            i += 1
            continue
        if "://" in value:
            return f"--db {value} is not a SQLite file"
        out += ["--db", str(db)]
        given = True
    if not given:
        out += ["--db", str(db)]
    return out


def subprocess_runner(cwd: Path = ROOT) -> Runner:
    """Run ``python -m sweeper ARGS`` as a reader would, stdout a pipe, results cached."""
    env = {k: v for k, v in os.environ.items() if k not in ("SWEEPER_DB", "FORCE_COLOR")}
    env.update(COLUMNS="120", NO_COLOR="1")
    cache: dict[tuple[str, ...], Result] = {}

    def run(args: Sequence[str]) -> Result:
        key = tuple(args)
        if key not in cache:
            try:
                p = subprocess.run(
                    [sys.executable, "-m", "sweeper", *args],
                    cwd=cwd,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    capture_output=True,
                    text=True,
                    timeout=TIMEOUT_S,
                )
                cache[key] = Result(p.returncode, p.stdout, p.stderr)
            except subprocess.TimeoutExpired:
                cache[key] = Result(-1, "", f"timed out after {TIMEOUT_S} s")
        return cache[key]

    return run


def excerpt_missing(shown: list[str], output: list[str]) -> list[str]:
    """The lines of an abridged block that do not occur, in order, in the output."""
    missing, at = [], 0
    for line in shown:
        if not line.strip() or line.strip() in ("...", "…"):
            continue
        pattern = re.compile(".*".join(re.escape(part) for part in line.split("...")) + r"\Z")
        for k in range(at, len(output)):
            if pattern.match(output[k]):
                at = k + 1
                break
        else:
            missing.append(line)
    return missing


def check_block(block: Block, run: Runner, db: Path) -> Outcome:
    planned = plan(block, db)
    if isinstance(planned, str):
        return Outcome(block, "skipped", planned)
    result = run(planned)
    if result.returncode != 0:
        note = f"exit {result.returncode}: {result.stderr.strip()[-2000:]}"
        return Outcome(block, "error", note)
    expected = [line.rstrip() for line in result.stdout.rstrip("\n").splitlines()]
    if block.abridged:
        missing = excerpt_missing(block.shown, expected)
        if missing:
            note = "abridged; not in the output:\n" + "\n".join(missing)
            return Outcome(block, "stale", note, expected)
        return Outcome(block, "ok", "abridged", expected)
    if expected == block.shown:
        return Outcome(block, "ok", "", expected)
    return Outcome(block, "stale", "", expected)


def rewrite(path: Path, outcomes: Iterable[Outcome]) -> None:
    """Replace each stale, complete block's output with what its command printed."""
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    for o in sorted(outcomes, key=lambda o: o.block.start, reverse=True):
        b = o.block
        body = [b.lines[0], *o.expected]
        lines[b.start + 1 : b.end] = [(b.indent + line) if line else "" for line in body]
    path.write_text("\n".join(lines) + ("\n" if text.endswith("\n") else ""), encoding="utf-8")


def copy_db(source: Path, into: Path) -> Path:
    """A copy of the database (with its WAL, if any) that commands may open and migrate."""
    copy = into / "results.db"
    shutil.copyfile(source, copy)
    for suffix in ("-wal", "-shm"):
        extra = source.with_name(source.name + suffix)
        if extra.exists():
            shutil.copyfile(extra, copy.with_name(copy.name + suffix))
    return copy


def check(
    files: Sequence[Path] | None = None,
    *,
    write: bool = False,
    db: Path = ROOT / "results.db",
    runner: Runner | None = None,
) -> Report:
    """Check every command block of the files (default: README.md and docs/); with write=True
    rewrite the stale complete blocks. The commands see a temporary copy of ``db``."""
    files = markdown_files() if files is None else list(files)
    with tempfile.TemporaryDirectory(prefix="docs-outputs-") as tmp:
        copy = copy_db(db, Path(tmp))
        run = runner or subprocess_runner()
        outcomes = [check_block(b, run, copy) for path in files for b in find_blocks(path)]
    if write:
        for path in files:
            stale = [
                o
                for o in outcomes
                if o.block.path == path and o.status == "stale" and not o.block.abridged
            ]
            if stale:
                rewrite(path, stale)
    return Report(outcomes)


def describe(report: Report, *, write: bool = False, out: Callable[[str], None] = print) -> None:
    for o in report.outcomes:
        b = o.block
        if o.status == "stale" and not b.abridged:
            if write:
                out(f"REWRITTEN {b.where}: $ {b.command}")
            else:
                out(f"STALE {b.where}: $ {b.command}")
                diff = difflib.unified_diff(
                    b.shown, o.expected, "shown", "printed now", lineterm="", n=1
                )
                out("\n".join(diff))
        elif o.status == "stale":
            out(f"STALE (abridged, fix by hand) {b.where}: $ {b.command}\n{o.note}")
        elif o.status == "error":
            out(f"ERROR {b.where}: $ {b.command}\n{o.note}")
        elif o.status == "skipped":
            out(f"skipped {b.where}: {o.note}")
        else:
            out(f"ok{' (abridged)' if b.abridged else ''} {b.where}: $ {b.command}")
    abridged = [o for o in report.outcomes if o.block.abridged]
    checked = [o for o in report.outcomes if o.status != "skipped"]
    out(
        f"{len(report.outcomes)} command blocks: {len(checked)} checked "
        f"({len(abridged)} abridged), {len(report.having('skipped'))} skipped, "
        f"{len(report.having('stale'))} stale{' (rewritten where complete)' if write else ''}, "
        f"{len(report.having('error'))} errors"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="report stale blocks (the default)")
    mode.add_argument("--write", action="store_true", help="rewrite stale blocks in place")
    parser.add_argument("--db", type=Path, default=ROOT / "results.db", help="copied, never opened")
    parser.add_argument("files", nargs="*", type=Path, help="default: README.md and docs/**/*.md")
    args = parser.parse_args(argv)
    files = [p.resolve() for p in args.files] or None
    report = check(files, write=args.write, db=args.db)
    describe(report, write=args.write)
    if args.write:
        unfixable = [o for o in report.failed if o.status == "error" or o.block.abridged]
        return 1 if unfixable else 0
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
