"""Optional dependencies: a module that one of the package's extras provides, imported on use.

A core install (``pip install sweeper``) runs the obesity task and every query; the ECG task
needs ``sweeper[ecg]`` (wfdb, with matplotlib, aiohttp, requests and soundfile behind it).
`require` turns the missing module into one `MissingExtraError` line naming the extra, so the
CLI prints ``Error: the ECG task needs the 'ecg' extra ...`` instead of a traceback.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from sweeper.errors import MissingExtraError


def require(module: str, *, extra: str, purpose: str) -> ModuleType:
    """Import `module`, which the extra ``sweeper[<extra>]`` installs.

    Args:
        module: the top-level module, e.g. ``"wfdb"``.
        extra: the extra that provides it, e.g. ``"ecg"``.
        purpose: what needs it, as the start of a sentence, e.g. ``"the ECG task"``.

    Returns:
        The imported module.

    Raises:
        MissingExtraError: the module is not installed, or is installed but fails to import
            (one of its own dependencies is missing or broken); the message says what to run.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        install = f"pip install 'sweeper[{extra}]'"
        if isinstance(exc, ModuleNotFoundError) and exc.name == module:
            raise MissingExtraError(
                f"{purpose} needs the '{extra}' extra ({module} is not installed): {install}"
            ) from None
        raise MissingExtraError(
            f"{purpose} needs {module}, which fails to import ({exc}): {install}"
        ) from None
