"""The command outputs shown in README.md and docs/ (``$ sweeper ...`` blocks) are what the
commands print against the shipped results.db (a temporary copy: the file is never opened):
scripts/docs_outputs.py, which also rewrites them (--write) after an output format changes."""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DB = ROOT / "results.db"


def script() -> ModuleType:
    """scripts/docs_outputs.py, imported by path (scripts/ is no package)."""
    spec = importlib.util.spec_from_file_location(
        "docs_outputs", ROOT / "scripts" / "docs_outputs.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


docs_outputs = script()


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.skipif(not RESULTS_DB.exists(), reason="no shipped results.db")
def test_every_shown_output_is_what_its_command_prints(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "120")
    before = digest(RESULTS_DB)
    report = docs_outputs.check()
    assert digest(RESULTS_DB) == before, "results.db was written"
    lines: list[str] = []
    docs_outputs.describe(report, out=lines.append)
    checked = [o for o in report.outcomes if o.status != "skipped"]
    assert len(checked) >= 10, "\n".join(lines)  # the blocks were found and run
    assert report.failed == [], "stale blocks (python scripts/docs_outputs.py --write):\n" + (
        "\n".join(lines)
    )


PAGE = """\
Intro.

```
$ sweeper best demo --format markdown
| old |
```

<!-- output: abridged -->
```
$ sweeper compare demo --by x --format markdown
| a | 1 |
...
| c | 3 |
```

```
$ cp results.db /tmp/x.db
$ sweeper confirm demo --db /tmp/x.db
whatever
```

    ```
    $ sweeper table demo --db /tmp/x.db
    title

    | row |
    ```

```
$ sweeper run studies/x.toml
Error: ...
```
"""


def test_check_and_write_on_a_page(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(PAGE, encoding="utf-8")
    db = tmp_path / "source.db"
    db.write_bytes(b"not opened, only copied")
    calls: list[list[str]] = []

    def fake(args: Sequence[str]) -> object:
        calls.append(list(args))
        assert args[-2] == "--db" and Path(args[-1]).name == "results.db"
        assert Path(args[-1]).read_bytes() == db.read_bytes()  # a copy of the source
        printed = {
            "best": "| new |   \n",
            "compare": "title\n\n| a | 1 |\n|---|---|\n| b | 2 |\n| c | 3 |\n",
            "table": "title\n\n| row |\n",
        }
        return docs_outputs.Result(0, printed[args[0]], "")

    report = docs_outputs.check([page], db=db, runner=fake)
    assert [o.status for o in report.outcomes] == ["stale", "ok", "skipped", "ok", "skipped"]
    assert [o.block.abridged for o in report.outcomes] == [False, True, False, False, False]
    assert [c[0] for c in calls] == ["best", "compare", "table"]
    table = next(c for c in calls if c[0] == "table")
    assert table.count("--db") == 1 and "/tmp/x.db" not in table  # its --db replaced

    docs_outputs.check([page], db=db, runner=fake, write=True)
    text = page.read_text(encoding="utf-8")
    assert "$ sweeper best demo --format markdown\n| new |\n```" in text  # trailing spaces cut
    assert text.replace("| new |", "| old |") == PAGE  # nothing else touched
    assert docs_outputs.check([page], db=db, runner=fake).failed == []


def test_an_abridged_block_is_still_checked(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(PAGE.replace("| c | 3 |", "| c | 4 |"), encoding="utf-8")
    db = tmp_path / "source.db"
    db.write_bytes(b"")

    def fake(args: Sequence[str]) -> object:
        out = "| a | 1 |\n| b | 2 |\n| c | 3 |\n" if args[0] == "compare" else "title\n\n| row |\n"
        return docs_outputs.Result(0, out if args[0] != "best" else "| old |\n", "")

    report = docs_outputs.check([page], db=db, runner=fake, write=True)
    [stale] = report.failed
    assert stale.block.abridged and "| c | 4 |" in stale.note
    assert "| c | 4 |" in page.read_text(encoding="utf-8")  # never rewritten
