"""What can be checked of the image and the packaging without a Docker engine."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_docker_entrypoint_is_the_console_script() -> None:
    text = (REPO / "docker" / "Dockerfile").read_text()
    entry = re.search(r"^ENTRYPOINT (.+)$", text, re.M)
    assert entry is not None
    assert json.loads(entry.group(1)) == ["sweeper"]
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["sweeper"] == "sweeper.cli:main"
    # The CPU image pins the torch CI uses, before installing the project.
    install_project = text.index('pip install ".[postgres,parquet,dask]"')
    assert text.index("torch==${TORCH_VERSION}") < install_project
    assert "ARG TORCH_VERSION=2.13.0" in text


def test_torch_requirement_admits_the_cpu_wheel() -> None:
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    torch_req = next(d for d in deps if d.startswith("torch"))
    from packaging.specifiers import SpecifierSet

    assert "2.13.0" in SpecifierSet(torch_req.removeprefix("torch"))
