"""Is the Dask scheduler there? Asked by `sweeper.launch.run.start` before anything is written.

A plain TCP connection with a short timeout, without importing dask.distributed (seconds of
imports) and without registering a client: enough to tell a typo'd address, a closed port or a
host that does not answer from a scheduler that listens. The backend's own `Client` (in
`sweeper.launch.backends`) still makes the real handshake when the run starts.
"""

from __future__ import annotations

import importlib.util
import socket
from urllib.parse import urlsplit

from sweeper.errors import SweeperError

#: Dask's default scheduler port, used when an address names none.
DEFAULT_PORT = 8786
#: seconds to wait for the scheduler to accept a connection.
TIMEOUT_S = 5.0
#: address schemes that travel over TCP (the others, e.g. ``ucx://``, are left to Dask).
_TCP = ("tcp", "tls", "ws", "wss")


def check_scheduler(address: str, timeout_s: float = TIMEOUT_S) -> None:
    """Check that dask.distributed is installed and that `address` accepts a connection.

    Args:
        address: ``tcp://HOST:PORT`` (``HOST:PORT`` and ``tls://``, ``ws://`` too).
        timeout_s: how long to wait for the connection.

    Raises:
        SweeperError: dask.distributed is missing, the address cannot be parsed, the host is
            unknown, or nothing accepts the connection within `timeout_s`.
    """
    if importlib.util.find_spec("distributed") is None:
        raise SweeperError("--backend dask needs dask.distributed: pip install 'sweeper[dask]'")
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    if parts.scheme not in _TCP:
        return
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError:
        raise SweeperError(
            f"--scheduler {address}: not a valid port; write tcp://HOST:PORT, e.g. "
            f"tcp://127.0.0.1:{DEFAULT_PORT}"
        ) from None
    host = parts.hostname
    if not host:
        raise SweeperError(f"--scheduler {address}: no host; write tcp://HOST:PORT")
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except socket.gaierror:
        raise SweeperError(
            f"cannot reach the Dask scheduler at {address}: unknown host {host!r}; nothing "
            "was written"
        ) from None
    except OSError as exc:
        why = (
            f"no answer within {timeout_s:g} s"
            if isinstance(exc, TimeoutError)
            else (exc.strerror or str(exc)).lower()
        )
        raise SweeperError(
            f"cannot reach the Dask scheduler at {address}: {why}; start it (dask scheduler "
            f"--port {port}) or fix --scheduler; nothing was written"
        ) from None
