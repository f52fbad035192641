"""The README and the docs site: short README, no broken links, a CLI reference generated from
the app (every command and option in it), and `mkdocs build --strict` passing."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.md"))
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def hook(name: str) -> ModuleType:
    """A module of docs/hooks/, imported by path (it is no package)."""
    path = DOCS / "hooks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"docs_hook_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def prose(text: str) -> str:
    """Markdown without its fenced code blocks and inline code (links there are not links)."""
    text = re.sub(r"^(```|~~~).*?^\1[^\n]*$", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def relative_links(path: Path) -> list[str]:
    found = []
    for target in LINK.findall(prose(path.read_text(encoding="utf-8"))):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # http:, https:, mailto:, or an anchor on the same page
        found.append(target)
    return found


def test_readme_is_short() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) < 200


def test_the_docs_have_their_pages() -> None:
    names = {str(p.relative_to(DOCS)) for p in PAGES}
    for page in (
        "index.md",
        "install.md",
        "reference/cli.md",
        "reference/study-file.md",
        "studies/obesity.md",
        "studies/ecg.md",
        "benchmarks.md",
        "architecture.md",
        "writing-a-task.md",
    ):
        assert page in names


@pytest.mark.parametrize(
    "path", [ROOT / "README.md", *PAGES], ids=lambda p: str(p.relative_to(ROOT))
)
def test_every_relative_link_resolves(path: Path) -> None:
    broken = []
    for target in relative_links(path):
        file = target.split("#", 1)[0]
        if file and not (path.parent / file).resolve().exists():
            broken.append(target)
    assert broken == [], f"{path.relative_to(ROOT)} links to missing files"


def test_the_link_finder_finds_links(tmp_path: Path) -> None:
    page = tmp_path / "p.md"
    page.write_text(
        "[a](x.md) ![b](img/y.png) [c](https://e.org) [d](#top) `[e](code.md)`\n"
        "```\n[f](block.md)\n```\n[g](z.md#part)\n",
        encoding="utf-8",
    )
    assert relative_links(page) == ["x.md", "img/y.png", "z.md#part"]


def _commands(cmd: Any, ctx: Any) -> list[tuple[str, list[str]]]:
    """(full name, long option names) of every visible command, walked from Typer's tree."""
    found: list[tuple[str, list[str]]] = []
    for name in getattr(cmd, "list_commands", lambda c: [])(ctx):
        sub = cmd.get_command(ctx, name)
        if sub is None or getattr(sub, "hidden", False):
            continue
        sub_ctx = sub.context_class(sub, info_name=name, parent=ctx)
        options = [
            opt
            for p in sub.get_params(sub_ctx)
            if p.param_type_name == "option" and not getattr(p, "hidden", False)
            for opt in [*p.opts, *p.secondary_opts]
            if opt.startswith("--") and opt != "--help"
        ]
        found.append((sub_ctx.command_path, options))
        found += _commands(sub, sub_ctx)
    return found


def test_the_cli_reference_is_generated_from_the_app() -> None:
    import typer

    from sweeper.cli import app

    module = hook("cli_reference")
    text = module.cli_reference()
    group = typer.main.get_command(app)
    commands = _commands(group, group.context_class(group, info_name="sweeper"))
    assert len(commands) >= 15
    assert sorted(module.command_names()) == sorted(name for name, _ in commands)
    for name, options in commands:
        heading = re.search(rf"^#+ `{re.escape(name)}` ", text, flags=re.M)
        assert heading, f"no section for {name}"
        section = text[heading.end() :]
        following = re.search(r"^#+ `sweeper ", section, flags=re.M)
        section = section[: following.start()] if following else section
        for option in options:
            assert f"`{option}`" in section, f"{name}: {option} is missing"
    assert "--checkpoint-every" in text  # an option of sweeper run, with its help
    page = "# CLI\n\n" + module.MARKER + "\n"
    assert module.MARKER not in module.on_page_markdown(page, page=None)
    assert "`sweeper run`" in module.on_page_markdown(page, page=None)


def test_the_cli_reference_page_is_not_hand_written() -> None:
    text = (DOCS / "reference" / "cli.md").read_text(encoding="utf-8")
    assert hook("cli_reference").MARKER in text
    assert "| `--" not in text  # no option table copied by hand


def test_the_task_parameters_are_generated_from_the_models() -> None:
    from sweeper.tasks import REGISTRY, get_task
    from sweeper.tasks.base import params_model

    module = hook("task_parameters")
    text = module.task_parameters()
    for name in REGISTRY:
        assert f'`task = "{name}"`' in text
        model = params_model(get_task(name))
        assert model is not None
        for field in model.model_fields:
            assert f"| `{field}` |" in text, f"{name}.{field} is missing"
    page = (DOCS / "reference" / "study-file.md").read_text(encoding="utf-8")
    assert module.MARKER in page


def test_the_study_file_reference_names_every_key() -> None:
    from sweeper.spec import StudyFile

    page = (DOCS / "reference" / "study-file.md").read_text(encoding="utf-8")
    missing = [k for k in StudyFile.model_fields if f"`{k}`" not in page and f"`[{k}]`" not in page]
    assert missing == []


def test_mkdocs_build_strict(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs")
    pytest.importorskip("material")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "NO_COLOR": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "s")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    html = (tmp_path / "s" / "reference" / "cli" / "index.html").read_text(encoding="utf-8")
    assert 'id="sweeper-run"' in html and "--checkpoint-every" in html
    assert "cli-reference" not in html  # the marker was replaced
