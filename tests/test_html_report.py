"""`render_report`: one self-contained HTML page; checked as text and in headless chromium."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from sweeper.html_report import render_report
from sweeper.store import Store
from tests.fixtures.searched import add_searched_study

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> str:
    src = ROOT / "results.db"
    if not src.exists():
        pytest.skip("results.db is not shipped in this checkout")
    copy = tmp_path_factory.mktemp("db") / "results.db"
    shutil.copy(src, copy)
    add_searched_study(f"sqlite:///{copy}")
    return f"sqlite:///{copy}"


def test_obesity_report_is_self_contained_and_complete(db: str) -> None:
    with Store(db) as store:
        page = render_report(store, ["obesity", "obesity_sam200"])
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=[\"']https?://", page)
    assert page.count("<script") >= 1 and page.count("plotly.js v") <= 2  # inlined once
    assert page.count('<table class="grid">') == 9  # 8 (optimizer, sam_rho) + sam200's one
    assert page.count('class="figure heatmap"') == 9
    assert '<td class="best">0.7637' in page  # obesity's best cell
    assert "sweeper run studies/obesity.toml --db" in page and "sweeper table obesity" in page


def test_ecg_and_searched_reports(db: str) -> None:
    with Store(db) as store:
        ecg = render_report(store, ["ecg_small"])
        toy = render_report(store, ["toy_random"])
    assert ecg.count('<table class="domain">') == 1 and ">Avg</th>" in ecg
    assert "&lt;toy&gt;" in toy and "<toy>" not in toy
    assert "diverged: &lt;nan&gt; at epoch 7" in toy and "Search history" in toy


#: per case: the studies of one page, its heatmap panels, headings that must be there.
PAGES = {
    "obesity": (["obesity", "obesity_sam200"], 9, ["Grid tables", "Parallel coordinates"]),
    "searched": (["toy_random"], 1, ["Search history", "Failed trials (1)"]),
    "ecg_small": (["ecg_small"], 0, ["Per-domain tables", "Curves of the best"]),
}


def chromium(page: Path, screenshot: Path) -> tuple[str, list[str]]:
    """Open `page` in headless Chromium: its DOM after the scripts ran, and the console lines
    (Chromium logs every console message and uncaught error of the page as ``CONSOLE``);
    a full-width screenshot goes to `screenshot`."""
    assert CHROMIUM is not None
    run = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            # Parcoords draws with WebGL: software WebGL on purpose (no GPU here), so that
            # Chromium's note about falling back to it is not mistaken for the page's.
            "--enable-unsafe-swiftshader",
            "--hide-scrollbars",
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1400,5000",
            f"--screenshot={screenshot}",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    console = [
        line
        for line in run.stderr.splitlines()
        # The driver's performance note on reading WebGL pixels is not the page's.
        if ":CONSOLE" in line and "GPU stall due to ReadPixels" not in line
    ]
    return run.stdout, console


def visible_text(dom: str) -> str:
    """The page's text: tags, scripts (the figures' data) and styles removed."""
    import html

    dom = re.sub(r"<(script|style)\b.*?</\1>", " ", dom, flags=re.S)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", dom)).split())


def screenshot_dir(tmp_path: Path) -> Path:
    """$SWEEPER_SCREENSHOTS (e.g. CI's artifact folder), else the test's temporary folder."""
    import os

    folder = Path(os.environ.get("SWEEPER_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_console_errors_are_seen(tmp_path: Path) -> None:
    """The check below would catch a broken page: an error and an uncaught exception."""
    page = tmp_path / "bad.html"
    page.write_text("<p>x</p><script>console.error('boom'); notAFunction();</script>")
    _, console = chromium(page, tmp_path / "bad.png")
    assert any('"boom"' in line for line in console), console
    assert any("Uncaught ReferenceError: notAFunction" in line for line in console), console


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
@pytest.mark.parametrize("case", list(PAGES))
def test_report_renders_in_chromium(db: str, tmp_path: Path, case: str) -> None:
    from sweeper.plots.study import metric_frame
    from sweeper.report import study_best

    names, heatmaps, headings = PAGES[case]
    with Store(db) as store:
        source = render_report(store, names)
        bests = []
        for name in names:
            info = store.study(name)
            bests.append(study_best(metric_frame(store, info), info.study, top=1)["mean"][0])
    page = tmp_path / "report.html"
    page.write_text(source, encoding="utf-8")
    shot = screenshot_dir(tmp_path) / f"report_{case}.png"
    dom, console = chromium(page, shot)
    assert console == []
    figures = source.count('<div class="figure')
    assert figures >= 3 and dom.count("plotly-graph-div js-plotly-plot") == figures
    assert dom.count("main-svg") >= figures  # every figure drew its svg
    assert dom.count('<div class="figure heatmap">') == heatmaps
    text = visible_text(dom)
    for heading in headings:
        assert heading in text
    for best in bests:
        assert f"{best:.4g}" in text, best  # the best configuration's seed mean, as shown
    assert shot.read_bytes().startswith(b"\x89PNG") and shot.stat().st_size > 50_000
