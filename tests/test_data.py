"""Dataset handling: locating, downloading and verifying files; encoding and splitting obesity."""

from __future__ import annotations

import hashlib
import io
import shutil
import socket
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

import sweeper.data
from sweeper.data import (
    RemoteFile,
    cache_dir,
    default_data_dir,
    fetch,
    file_sha256,
    resolve_data_dir,
    user_cache_dir,
)
from sweeper.errors import DataError
from sweeper.tasks.obesity import ObesityTask
from sweeper.tasks.obesity.data import (
    CLASSES,
    FEATURES,
    OBESITY_CSV,
    dataset_path,
    load_encoded,
    split_data,
)

CSV_NAME = "ObesityDataSet_raw_and_data_sinthetic.csv"


@pytest.fixture
def csv_path(data_dir: Path) -> Path:
    return data_dir / "obesity" / CSV_NAME


# --- resolve_data_dir ---------------------------------------------------------------------------


def test_data_dir_flag_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SWEEPER_DATA_DIR", str(tmp_path / "env"))
    assert resolve_data_dir(tmp_path / "flag") == tmp_path / "flag"


def test_data_dir_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SWEEPER_DATA_DIR", str(tmp_path / "env"))
    assert resolve_data_dir(None) == tmp_path / "env"


def test_data_dir_defaults_to_user_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("SWEEPER_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert resolve_data_dir(None) == tmp_path / "xdg" / "sweeper" / "data"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert resolve_data_dir(None) == tmp_path / "home" / ".cache" / "sweeper" / "data"


def test_one_cache_root_for_kernels_and_decoded_datasets(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from sweeper import kernel
    from sweeper.tasks.ecg import loader

    monkeypatch.setenv("SWEEPER_CACHE_DIR", str(tmp_path / "explicit"))
    assert cache_dir() == tmp_path / "explicit" == loader.cache_dir()
    assert kernel.CACHE_ENV == "SWEEPER_CACHE_DIR"
    monkeypatch.delenv("SWEEPER_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "sweeper" == loader.cache_dir() == user_cache_dir()
    # The data directory's default lies in the same user cache, whatever SWEEPER_CACHE_DIR says.
    monkeypatch.setenv("SWEEPER_CACHE_DIR", str(tmp_path / "explicit"))
    monkeypatch.delenv("SWEEPER_DATA_DIR", raising=False)
    assert resolve_data_dir(None) == default_data_dir() == tmp_path / "xdg" / "sweeper" / "data"


def test_user_trial_directories_go_to_the_user_data_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from sweeper.study import Study
    from sweeper.tasks.resolve import trials_dir

    gone = tmp_path / "gone"
    gone.mkdir()
    (gone / "t.py").write_text("def train(params, seed, trial):\n    return {'loss': 0.0}\n")
    study = Study.from_dict(
        {"name": "s", "task": "t.py:train", "metric": "loss", "space": {"lr": [0.1]}},
        base_dir=gone,
    )
    shutil.rmtree(gone)  # no directory beside the study file any more: the user data directory
    monkeypatch.delenv("SWEEPER_TRIALS_DIR", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "share"))
    assert trials_dir(study) == tmp_path / "share" / "sweeper" / "trials" / "s"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert trials_dir(study) == tmp_path / "home" / ".local" / "share" / "sweeper" / "trials" / "s"


def test_tests_find_the_data_where_sweeper_downloads_it(
    csv_path: Path, tmp_path: Path, server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After one download into the default data directory, the `data_dir` fixture finds it
    (before, about 29 tests skipped silently)."""
    from tests import conftest

    monkeypatch.delenv("SWEEPER_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(conftest, "REPO", tmp_path / "repo")  # no ../shared/data beside it
    assert conftest.find_data_dir() is None
    server.payload = _zip_of(CSV_NAME, csv_path.read_bytes())
    monkeypatch.setenv("SWEEPER_OBESITY_URL", server.url)
    ObesityTask().check_data({}, resolve_data_dir(None))
    assert conftest.find_data_dir() == tmp_path / "xdg" / "sweeper" / "data"


# --- encoding and split -------------------------------------------------------------------------


def test_first_rows_are_encoded_as_the_protocol_says(csv_path: Path) -> None:
    x, y = load_encoded(csv_path)
    assert x.shape == (2111, 16)
    assert list(FEATURES) == [
        "Gender", "Age", "Height", "Weight", "family_history_with_overweight", "FAVC", "FCVC",
        "NCP", "CAEC", "SMOKE", "CH2O", "SCC", "FAF", "TUE", "CALC", "MTRANS",
    ]  # fmt: skip
    # Female,21,1.62,64,yes,no,2,3,Sometimes,no,2,no,0,1,no,Public_Transportation,Normal_Weight
    assert x[0].tolist() == [0, 21, 1.62, 0, 1, 0, 2, 3, 1, 0, 2, 0, 0, 1, 0, 2]
    assert y[0] == 1
    # Female,21,1.52,56,yes,no,3,3,Sometimes,yes,3,yes,3,0,Sometimes,Public_Transportation,Normal_W.
    assert x[1].tolist() == [0, 21, 1.52, 0, 1, 0, 3, 3, 1, 1, 3, 1, 3, 0, 1, 2]
    assert y[1] == 1
    assert not x[:, 3].any()  # Weight zeroed in every row
    assert not x.flags.writeable  # shared by every caller in the process


def test_category_codes_span_their_ranges(csv_path: Path) -> None:
    x, _ = load_encoded(csv_path)
    columns = list(FEATURES)
    assert set(x[:, columns.index("MTRANS")]) == {0, 1, 2, 3, 4}
    assert set(x[:, columns.index("CAEC")]) == {0, 1, 2, 3}
    assert set(x[:, columns.index("CALC")]) == {0, 1, 2, 3}
    assert set(x[:, columns.index("Gender")]) == {0, 1}


def test_class_counts(csv_path: Path) -> None:
    _, y = load_encoded(csv_path)
    counts = dict(zip(CLASSES, np.bincount(y.astype(int)).tolist(), strict=True))
    assert counts == {
        "Insufficient_Weight": 272,
        "Normal_Weight": 287,
        "Overweight_Level_I": 290,
        "Overweight_Level_II": 290,
        "Obesity_Type_I": 351,
        "Obesity_Type_II": 297,
        "Obesity_Type_III": 324,
    }


def test_encoded_arrays_are_cached_per_path(csv_path: Path) -> None:
    assert load_encoded(csv_path) is load_encoded(csv_path)


def test_unknown_category_names_column_and_value(csv_path: Path, tmp_path: Path) -> None:
    bad = tmp_path / CSV_NAME
    bad.write_bytes(csv_path.read_bytes().replace(b"Public_Transportation", b"Tram", 1))
    with pytest.raises(DataError, match="column MTRANS has the unknown value 'Tram'"):
        load_encoded(bad)


def test_encoding_equals_pandas_reader_bit_for_bit(csv_path: Path) -> None:
    """The csv-module reader (which spares workers a pandas import) parses every number as
    pandas does, so results computed before the change stay reproducible."""
    pd = pytest.importorskip("pandas")
    x, y = load_encoded(csv_path)
    frame = pd.read_csv(csv_path)
    for j, (column, codes) in enumerate(FEATURES.items()):
        if codes is None and column != "Weight":
            expected = frame[column].to_numpy(dtype=np.float64)
            assert np.array_equal(x[:, j].view(np.int64), expected.view(np.int64)), column
    assert np.array_equal(y, frame["NObeyesdad"].map({c: i for i, c in enumerate(CLASSES)}))


def test_a_worker_reads_the_dataset_without_importing_pandas(csv_path: Path) -> None:
    """pandas costs every worker process half a second of its start; the worker's modules and
    the obesity loader do not need it."""
    code = (
        "import sys; from pathlib import Path; import sweeper.launch.supervisor, "
        "sweeper.tasks.obesity.task; from sweeper.tasks.obesity.data import load_encoded; "
        f"load_encoded(Path({str(csv_path)!r})); print('pandas' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_unreadable_numbers_and_short_rows_name_the_column(csv_path: Path, tmp_path: Path) -> None:
    bad = tmp_path / CSV_NAME
    lines = csv_path.read_text().splitlines()
    bad.write_text("\n".join([lines[0], lines[1].replace(",21,", ",twenty-one,", 1), *lines[2:]]))
    with pytest.raises(DataError, match="column Age has the non-number 'twenty-one'"):
        load_encoded(bad)
    short = tmp_path / "short" / CSV_NAME
    short.parent.mkdir()
    short.write_text("\n".join([lines[0], lines[1], "Female,21"]))
    with pytest.raises(DataError, match="line 3 has no value in column Height"):
        load_encoded(short)
    missing = tmp_path / "missing" / CSV_NAME
    missing.parent.mkdir()
    missing.write_text(lines[0].replace("MTRANS", "Transport") + "\n" + lines[1])
    with pytest.raises(DataError, match="missing column\\(s\\) MTRANS"):
        load_encoded(missing)


def test_split_sizes_and_seeding(csv_path: Path) -> None:
    x, y = load_encoded(csv_path)
    a = split_data(x, y, split_seed=0, train_fraction=0.8)
    assert (len(a.x_train), len(a.x_test), len(a.x_val)) == (1688, 423, 0)
    assert len(a.y_train) == 1688 and len(a.y_test) == 423

    same = split_data(x, y, split_seed=0, train_fraction=0.8)
    assert np.array_equal(same.x_train, a.x_train) and np.array_equal(same.y_test, a.y_test)

    other = split_data(x, y, split_seed=1, train_fraction=0.8)
    assert not np.array_equal(other.x_train, a.x_train)
    # Every row lands in exactly one part, whatever the seed.
    assert sorted(map(tuple, np.vstack([other.x_train, other.x_test]))) == sorted(map(tuple, x))


def test_validation_rows_are_the_end_of_the_training_rows(csv_path: Path) -> None:
    x, y = load_encoded(csv_path)
    full = split_data(x, y, split_seed=0, train_fraction=0.8)
    held = split_data(x, y, split_seed=0, train_fraction=0.8, val_fraction=0.15)
    n_val = round(0.15 * 1688)
    assert len(held.x_val) == n_val == 253
    assert np.array_equal(held.x_train, full.x_train[: 1688 - n_val])
    assert np.array_equal(held.x_val, full.x_train[1688 - n_val :])
    assert np.array_equal(held.x_test, full.x_test)


def test_split_refuses_to_leave_a_part_empty(csv_path: Path) -> None:
    x, y = load_encoded(csv_path)
    with pytest.raises(ValueError, match="leave 0 training and 2111 test rows of 2111"):
        split_data(x, y, split_seed=0, train_fraction=0.0001)
    with pytest.raises(ValueError, match="leave 0 training and 1056 test rows of 2111"):
        split_data(x, y, split_seed=0, train_fraction=0.5, val_fraction=0.9999)


def test_standardize_uses_training_statistics(csv_path: Path) -> None:
    x, y = load_encoded(csv_path)
    s = split_data(x, y, split_seed=0, train_fraction=0.8, val_fraction=0.15, standardize=True)
    weight = list(FEATURES).index("Weight")
    others = [i for i in range(16) if i != weight]
    np.testing.assert_allclose(s.x_train[:, others].mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(s.x_train[:, others].std(axis=0), 1, atol=1e-12)
    assert not s.x_train[:, weight].any() and not s.x_test[:, weight].any()  # zero std: std 1
    assert abs(s.x_test[:, others].mean()) > 1e-6  # test rows are not re-centred on themselves


# --- fetch: a present file ----------------------------------------------------------------------


def _remote(url: str = "http://127.0.0.1:9/never.zip") -> RemoteFile:
    return RemoteFile(CSV_NAME, "obesity", OBESITY_CSV.sha256, url, zip_member=CSV_NAME)


def test_present_file_is_returned_and_hashed_once(
    csv_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[Path] = []
    real = sweeper.data._hash_file

    def counting(path: Path) -> str:
        calls.append(path)
        return real(path)

    monkeypatch.setattr(sweeper.data, "_hash_file", counting)
    monkeypatch.setattr(sweeper.data, "_SHA256_CACHE", {})
    data_dir = csv_path.parents[1]
    assert fetch(_remote(), data_dir) == csv_path
    assert fetch(_remote(), data_dir) == csv_path
    assert calls == [csv_path]


def test_checksum_mismatch_says_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "obesity" / CSV_NAME
    path.parent.mkdir()
    path.write_bytes(b"not the dataset\n")
    actual = hashlib.sha256(b"not the dataset\n").hexdigest()
    with pytest.raises(DataError) as info:
        fetch(_remote(), tmp_path)
    assert str(info.value) == (
        f"{path}: sha256 is {actual}, expected {OBESITY_CSV.sha256}; the file is damaged or "
        "another version. Delete it so that sweeper downloads it again, or replace it with the "
        "original from http://127.0.0.1:9/never.zip"
    )


def test_changed_file_is_hashed_again(tmp_path: Path) -> None:
    path = tmp_path / "f.txt"
    path.write_bytes(b"one")
    assert file_sha256(path) == hashlib.sha256(b"one").hexdigest()
    path.write_bytes(b"three")  # another size, so another cache key even within one mtime tick
    assert file_sha256(path) == hashlib.sha256(b"three").hexdigest()


# --- fetch: downloads from a local server -------------------------------------------------------


def _zip_of(name: str, content: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name, content)
    return buffer.getvalue()


class LocalServer:
    """An HTTP server on 127.0.0.1 in a thread, answering every GET with `status` and
    `payload`."""

    def __init__(self) -> None:
        self.payload = b""
        self.status = 200
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
                self.send_response(owner.status)
                self.send_header("Content-Type", "application/zip")
                self.send_header("Content-Length", str(len(owner.payload)))
                self.end_headers()
                self.wfile.write(owner.payload)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass  # keep test output clean

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/obesity.zip"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def server() -> Iterator[LocalServer]:
    local = LocalServer()
    try:
        yield local
    finally:
        local.close()


def test_download_extracts_verifies_and_places_the_file(
    csv_path: Path, tmp_path: Path, server: LocalServer
) -> None:
    local = tmp_path / "copy.csv"
    shutil.copy(csv_path, local)  # serve a copy, never the shared file itself
    server.payload = _zip_of(f"some folder/{CSV_NAME}", local.read_bytes())
    url = server.url

    placed = fetch(_remote(), tmp_path / "data", url=url)

    assert placed == tmp_path / "data" / "obesity" / CSV_NAME
    assert placed.read_bytes() == local.read_bytes()
    assert file_sha256(placed) == OBESITY_CSV.sha256
    assert [p.name for p in placed.parent.iterdir()] == [CSV_NAME]  # no temporary left over


def test_task_check_data_downloads_from_the_override_url(
    csv_path: Path, tmp_path: Path, server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.payload = _zip_of(CSV_NAME, csv_path.read_bytes())
    monkeypatch.setenv("SWEEPER_OBESITY_URL", server.url)
    ObesityTask().check_data({}, tmp_path / "data")
    assert dataset_path(tmp_path / "data").read_bytes() == csv_path.read_bytes()


def test_corrupted_download_leaves_nothing_behind(
    csv_path: Path, tmp_path: Path, server: LocalServer
) -> None:
    url = server.url
    target = tmp_path / "data" / "obesity" / CSV_NAME
    damaged = csv_path.read_bytes().replace(b"Female", b"Femalf", 1)
    server.payload = _zip_of(CSV_NAME, damaged)
    with pytest.raises(DataError, match="has sha256 .* expected .*; nothing was written") as info:
        fetch(_remote(), tmp_path / "data", url=url)
    assert str(target) in str(info.value)

    server.payload = _zip_of(CSV_NAME, csv_path.read_bytes())[:-40]  # truncated archive
    with pytest.raises(DataError, match="is not a readable zip"):
        fetch(_remote(), tmp_path / "data", url=url)

    server.payload = _zip_of("README.txt", b"hello")
    with pytest.raises(DataError, match=f"holds no {CSV_NAME}"):
        fetch(_remote(), tmp_path / "data", url=url)

    assert not (tmp_path / "data").exists()  # not even the directory was created


def test_refused_connection_names_where_to_put_the_file(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port that was just free: nothing listens there now
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/obesity.zip"
    target = tmp_path / "data" / "obesity" / CSV_NAME
    with pytest.raises(DataError) as info:
        fetch(_remote(), tmp_path / "data", url=url)
    message = str(info.value)
    assert message.startswith(f"download of {url} failed (")
    assert message.endswith(
        f"Download {CSV_NAME} from the zip at {url} by hand and put it at {target}, or point "
        f"--data-dir or SWEEPER_DATA_DIR at a directory that holds obesity/{CSV_NAME}"
    )
    assert not target.exists()


def test_http_error_and_file_url(csv_path: Path, tmp_path: Path, server: LocalServer) -> None:
    """pooch's HTTP errors become the same one-line DataError; a file: URL (an offline mirror
    named by SWEEPER_OBESITY_URL) is read directly and verified like a download."""
    server.status = 404
    target = tmp_path / "data" / "obesity" / CSV_NAME
    with pytest.raises(DataError) as info:
        fetch(_remote(), tmp_path / "data", url=server.url)
    assert str(info.value).startswith(
        f"download of {server.url} failed (404 Client Error: Not Found for url: {server.url}). "
        f"Download {CSV_NAME} from the zip at {server.url} by hand and put it at {target}"
    )
    assert not (tmp_path / "data").exists()

    mirror = tmp_path / "mirror.zip"
    mirror.write_bytes(_zip_of(CSV_NAME, csv_path.read_bytes()))
    assert fetch(_remote(), tmp_path / "data", url=mirror.as_uri()) == target
    assert file_sha256(target) == OBESITY_CSV.sha256
