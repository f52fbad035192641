"""quickstart's torch install (scripts/install_torch.sh): PyTorch's CPU wheel index when it
answers, else pip's own configuration, tested with fake indexes holding a fake torch wheel.

Each fake wheel says which index it came from; pip runs with its configuration isolated
(PIP_CONFIG_FILE=/dev/null) so this machine's local wheel directory plays no part, and installs
with ``--target`` into a temporary directory, so no environment is touched.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "install_torch.sh"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def _fake_wheel(directory: Path, origin: str) -> None:
    """A pure-Python wheel ``torch-2.13.0`` whose module records `origin`."""
    files = {
        "torch/__init__.py": f'ORIGIN = "{origin}"\n',
        "torch-2.13.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: torch\nVersion: 2.13.0\n",
        "torch-2.13.0.dist-info/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = []
    for name, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{name},sha256={digest.decode()},{len(text.encode())}")
    record.append("torch-2.13.0.dist-info/RECORD,,")
    files["torch-2.13.0.dist-info/RECORD"] = "\n".join(record) + "\n"
    directory.mkdir(parents=True)
    with zipfile.ZipFile(directory / "torch-2.13.0-py3-none-any.whl", "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)


def _simple_index(root: Path, origin: str) -> Path:
    """A PEP 503 "simple" index directory serving one fake torch wheel; returns its root."""
    _fake_wheel(root / "torch", origin)
    wheel = "torch-2.13.0-py3-none-any.whl"
    (root / "torch" / "index.html").write_text(f'<a href="{wheel}">{wheel}</a>\n')
    (root / "index.html").write_text('<a href="torch/">torch</a>\n')
    return root


@pytest.fixture
def http_index(tmp_path: Path) -> Iterator[str]:
    """The fake "CPU index", served over HTTP on 127.0.0.1 (like download.pytorch.org)."""
    root = _simple_index(tmp_path / "cpu-index" / "simple", "cpu-index")

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _refused_url() -> str:
    with socket.socket() as sock:  # a port that was just free: nothing listens there now
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}/whl/cpu"


def _install(tmp_path: Path, torch_index: str | None) -> tuple[str, str]:
    """Run the script with pip's configuration = a fake local index; return (origin, stderr)."""
    configured = _simple_index(tmp_path / "configured" / "simple", "pip-configuration")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_INDEX_URL=configured.as_uri())
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_CACHE_DIR="1")
    index = [] if torch_index is None else ["--index-url", torch_index]
    target = tmp_path / "site"
    result = subprocess.run(
        ["bash", str(SCRIPT), *index, sys.executable, "torch==2.13.0", "--target", str(target),
         "--no-deps"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    namespace: dict[str, str] = {}
    exec((target / "torch" / "__init__.py").read_text(), namespace)
    return namespace["ORIGIN"], result.stderr


def test_the_cpu_index_is_used_when_it_answers(tmp_path: Path, http_index: str) -> None:
    origin, stderr = _install(tmp_path, http_index)
    assert origin == "cpu-index"
    assert stderr == f"torch from {http_index}\n"


def test_pip_configuration_is_used_when_the_index_does_not_answer(tmp_path: Path) -> None:
    unreachable = _refused_url()
    origin, stderr = _install(tmp_path, unreachable)
    assert origin == "pip-configuration"
    assert stderr == (
        f"note: {unreachable} is not reachable; installing torch from pip's configured index "
        "(on a machine without a GPU, check that it serves the CPU build)\n"
        "torch from pip's configuration\n"
    )


def test_an_empty_torch_index_means_pip_configuration(tmp_path: Path, http_index: str) -> None:
    origin, stderr = _install(tmp_path, "")
    assert origin == "pip-configuration"
    assert stderr == "torch from pip's configuration\n"


def _choice(probe: str) -> subprocess.CompletedProcess[str]:
    """`torch_index` with TORCH_INDEX unset and the reachability probe replaced by `probe`."""
    env = {k: v for k, v in os.environ.items() if k != "TORCH_INDEX"}
    return subprocess.run(
        ["bash", "-c", f'source "$1"; torch_index_reachable() {{ {probe}; }}; torch_index python',
         "test", str(SCRIPT)],
        env=env, capture_output=True, text=True, timeout=30,
    )  # fmt: skip


def test_default_index_is_pytorchs_cpu_index() -> None:
    """Without TORCH_INDEX the script asks PyTorch's CPU index first (no network: the probe is
    replaced by one answering for that exact URL only)."""
    asked = _choice(f'[ "$2" = "{CPU_INDEX}" ]')
    assert (asked.returncode, asked.stdout, asked.stderr) == (0, CPU_INDEX + "\n", "")
    down = _choice("false")
    assert (down.returncode, down.stdout) == (0, "")
    assert down.stderr.startswith(f"note: {CPU_INDEX} is not reachable;")


def test_torch_index_environment_variable_chooses_the_index(
    tmp_path: Path, http_index: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """quickstart.sh passes no --index-url: TORCH_INDEX (e.g. a CUDA index) overrides there."""
    monkeypatch.setenv("TORCH_INDEX", http_index)
    origin, stderr = _install(tmp_path, None)
    assert (origin, stderr) == ("cpu-index", f"torch from {http_index}\n")


def test_quickstart_installs_torch_with_the_script_first() -> None:
    quickstart = (REPO / "quickstart.sh").read_text()
    script = quickstart.index("bash scripts/install_torch.sh .venv/bin/python torch==2.13.0\n")
    assert script < quickstart.index("pip install --quiet -e '.[test]'")
