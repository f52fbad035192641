"""What can be checked of the image and the packaging without a Docker engine."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_docker_entrypoint_is_the_console_script() -> None:
    text = (REPO / "docker" / "Dockerfile").read_text()
    entry = re.search(r"^ENTRYPOINT (.+)$", text, re.M)
    assert entry is not None
    assert json.loads(entry.group(1)) == ["sweeper"]
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["sweeper"] == "sweeper.cli:main"
    # The CPU image pins the torch CI uses, before installing the project, through the script
    # that prefers PyTorch's CPU index (tests/test_quickstart.py tests its choice).
    install_project = text.index('pip install ".[postgres,parquet,dask]"')
    assert text.index("torch==${TORCH_VERSION}") < install_project
    assert "ARG TORCH_VERSION=2.13.0" in text
    assert "ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu" in text
    install_torch = (
        'RUN bash /tmp/install_torch.sh --index-url "${TORCH_INDEX}" python '
        '"torch==${TORCH_VERSION}"'
    )
    assert text.index("COPY scripts/install_torch.sh /tmp/install_torch.sh") < text.index(
        install_torch
    )
    # pyproject names the license file: the build needs it in the image too.
    assert "COPY pyproject.toml README.md LICENSE ./" in text


def test_torch_requirement_admits_the_cpu_wheel() -> None:
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    torch_req = next(d for d in deps if d.startswith("torch"))
    from packaging.specifiers import SpecifierSet

    assert "2.13.0" in SpecifierSet(torch_req.removeprefix("torch"))


# --- dependencies, extras, the license ----------------------------------------------------------

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
TOOLS = {"mypy", "ruff"}


def _names(requirements: list[str]) -> set[str]:
    from packaging.requirements import Requirement

    return {Requirement(r).name for r in requirements}


def test_core_install_leaves_out_the_ecg_readers_and_the_tools() -> None:
    project = PYPROJECT["project"]
    core = _names(project["dependencies"])
    assert not core & {"wfdb", "matplotlib", *TOOLS}
    # What every core command needs: the statistics of queries, directories, the download.
    assert {"torch", "scipy", "optuna", "platformdirs", "pooch"} <= core
    extras = project["optional-dependencies"]
    assert _names(extras["ecg"]) == {"wfdb"}
    for extra, requirements in extras.items():
        if extra != "test":  # users' extras never pull the code checkers
            assert not _names(requirements) & TOOLS, extra
    users = sorted(set(extras) - {"all", "test"})
    assert users == ["dask", "ecg", "parquet", "plot", "postgres"]
    from packaging.requirements import Requirement

    (everything,) = (Requirement(r) for r in extras["all"])
    assert (everything.name, everything.extras) == ("sweeper", set(users))
    assert "sweeper[all]" in extras["test"] and not _names(extras["test"]) & TOOLS
    dev = _names(PYPROJECT["dependency-groups"]["dev"])
    assert TOOLS | {"pytest", "pytest-timeout"} <= dev


def test_license_is_mit_and_shipped() -> None:
    assert PYPROJECT["project"]["license"] == "MIT"
    assert PYPROJECT["project"]["license-files"] == ["LICENSE"]
    text = (REPO / "LICENSE").read_text()
    assert text.startswith("MIT License\n\nCopyright (c) ")
    assert text.splitlines()[2].endswith(" sweeper contributors")
    assert "THE SOFTWARE IS PROVIDED \"AS IS\", WITHOUT WARRANTY OF ANY KIND" in text


def test_wheel_ships_the_studies_the_license_and_the_kernel(tmp_path: Path) -> None:
    """Build the wheel from a copy of the sources (never in the working tree) and list it."""
    import shutil
    import zipfile

    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(
        REPO / "sweeper", src / "sweeper", ignore=shutil.ignore_patterns("__pycache__")
    )
    from importlib.metadata import version

    from packaging.version import Version

    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "out")]
    env = dict(os.environ)
    if Version(version("setuptools")) >= Version("77"):  # torch requires a recent one
        # No index needed: build with the installed setuptools, pip's configuration ignored.
        env = {k: v for k, v in env.items() if not k.startswith("PIP_")}
        env["PIP_CONFIG_FILE"] = os.devnull
        build += ["--no-build-isolation", "--no-index"]
    subprocess.run([*build, str(src)], check=True, env=env, capture_output=True, timeout=300)
    (wheel,) = (tmp_path / "out").glob("sweeper-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
        meta = archive.read(metadata).decode()
    studies = {f"sweeper/studies/{p.name}" for p in (REPO / "studies").glob("*.toml")}
    assert studies and studies <= names
    # The kernel's source and every header it includes (without them a wheel's kernel would not
    # compile and training would fall back to PyTorch).
    kernel = REPO / "sweeper" / "kernel"
    sources = {f"sweeper/kernel/{p.name}" for p in kernel.glob("*.[ch]")}
    assert "sweeper/kernel/stacked_mlp.c" in sources and len(sources) >= 4
    assert sources <= names
    assert "sweeper/py.typed" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert "License-Expression: MIT" in meta.splitlines()
    assert 'Requires-Dist: wfdb>=4.1; extra == "ecg"' in meta.splitlines()


# --- missing extras -----------------------------------------------------------------------------


def test_missing_module_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sweeper.errors import MissingExtraError
    from sweeper.extras import require

    monkeypatch.setitem(sys.modules, "wfdb", None)  # what an uninstalled module looks like
    with pytest.raises(MissingExtraError) as info:
        require("wfdb", extra="ecg", purpose="the ECG task")
    assert str(info.value) == (
        "the ECG task needs the 'ecg' extra (wfdb is not installed): pip install 'sweeper[ecg]'"
    )
    # Installed, but one of its own dependencies is missing: said as such.
    (tmp_path / "halfway_installed.py").write_text("import no_such_module_for_sweeper_tests\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(MissingExtraError) as info:
        require("halfway_installed", extra="plot", purpose="sweeper plot")
    assert str(info.value) == (
        "sweeper plot needs halfway_installed, which fails to import (No module named "
        "'no_such_module_for_sweeper_tests'): pip install 'sweeper[plot]'"
    )


def test_ecg_study_without_the_extra_is_one_line(tmp_path: Path) -> None:
    """wfdb absent (None in sys.modules, as after `pip install sweeper` without `[ecg]`): the run
    stops before the database is touched with one line naming the extra."""
    code = (
        "import sys; sys.modules['wfdb'] = None; from sweeper.cli import main; "
        "sys.argv = ['sweeper', *sys.argv[1:]]; main()"
    )
    db = tmp_path / "ecg.db"
    result = subprocess.run(
        [sys.executable, "-c", code, "run", "ecg_smoke", "--db", str(db), "--no-progress",
         "--data-dir", str(tmp_path / "nodata")],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr == (
        "Error: the ECG task needs the 'ecg' extra (wfdb is not installed): "
        "pip install 'sweeper[ecg]'\n"
    )
    assert not db.exists()


# --- the studies shipped with the package -------------------------------------------------------


def test_packaged_studies_are_the_repository_studies() -> None:
    """studies/*.toml is the source; sweeper/studies/ holds copies that ship in the wheel."""
    from sweeper.studies import DIRECTORY

    source = {p.name: p.read_bytes() for p in (REPO / "studies").glob("*.toml")}
    packaged = {p.name: p.read_bytes() for p in DIRECTORY.glob("*.toml")}
    differ = sorted(n for n in source.keys() | packaged.keys() if source.get(n) != packaged.get(n))
    assert differ == [], "run: rm sweeper/studies/*.toml && cp studies/*.toml sweeper/studies/"


def test_every_packaged_study_is_valid_and_named_after_its_file() -> None:
    from sweeper.studies import DIRECTORY, names
    from sweeper.study import load_study

    assert "quick" in names() and "obesity" in names()
    for name in names():
        assert load_study(DIRECTORY / f"{name}.toml").name == name


def test_a_study_is_a_path_or_a_packaged_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sweeper.errors import StudyFileError
    from sweeper.studies import DIRECTORY, names, resolve

    monkeypatch.chdir(tmp_path)
    assert resolve("quick") == DIRECTORY / "quick.toml"
    (tmp_path / "studies").mkdir()
    (tmp_path / "studies" / "quick.toml").write_text("mine")
    assert resolve("studies/quick.toml") == Path("studies/quick.toml")  # a path: as given
    (tmp_path / "quick").mkdir()  # a directory of that name does not hide the packaged study
    assert resolve("quick") == DIRECTORY / "quick.toml"
    (tmp_path / "obesity").write_text("mine")  # a file of that name does
    assert resolve("obesity") == Path("obesity")

    listed = ", ".join(names())
    with pytest.raises(StudyFileError) as info:
        resolve("quik")
    assert str(info.value) == (
        "quik: no such file, and no packaged study of that name; packaged studies, run by name "
        f"(sweeper run quick): {listed}"
    )
    with pytest.raises(StudyFileError) as info:
        resolve("elsewhere/quick.toml")
    assert str(info.value) == (
        "elsewhere/quick.toml: no such file; packaged studies, run by name (sweeper run quick): "
        f"{listed}"
    )


def test_run_takes_a_packaged_name(tmp_path: Path) -> None:
    """`sweeper run quick` reads the packaged study: here it gets as far as the dataset check
    (no download can succeed), far past the study file."""
    env = {**os.environ, "SWEEPER_OBESITY_URL": "http://127.0.0.1:9/obesity.zip"}
    cli = [sys.executable, "-m", "sweeper", "run"]
    nodata = ["--data-dir", str(tmp_path / "nodata"), "--db", str(tmp_path / "q.db")]
    result = subprocess.run(
        [*cli, "quick", *nodata], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.startswith("Error: download of http://127.0.0.1:9/obesity.zip failed (")
    result = subprocess.run(
        [*cli, "quik", *nodata], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.startswith("Error: quik: no such file, and no packaged study")
    assert len(result.stderr.splitlines()) == 1
