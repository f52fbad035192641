"""Writing a figure to disk, the format chosen by the file extension."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sweeper.errors import SweeperError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: the file formats `save` writes, by extension.
FORMATS = ("png", "svg", "pdf")


class PlotFormatError(SweeperError):
    """A figure file name whose extension is not one of `FORMATS`."""


def format_of(path: str | Path) -> str:
    """The format a figure file's extension names: ``png``, ``svg`` or ``pdf``.

    Raises:
        PlotFormatError: ``cannot write 'x.jpg': unknown extension '.jpg'; choose one of: png,
            svg, pdf``.
    """
    target = Path(path)
    ext = target.suffix.lower().lstrip(".")
    if ext not in FORMATS:
        raise PlotFormatError(
            f"cannot write {str(target)!r}: unknown extension {target.suffix or '(none)'!r}; "
            f"choose one of: {', '.join(FORMATS)}"
        )
    return ext


def save(fig: Figure, path: str | Path) -> Path:
    """Write `fig` to `path` as png (150 dpi), svg or pdf, after its extension.

    Returns:
        The path written.

    Raises:
        PlotFormatError: ``cannot write 'x.jpg': unknown extension '.jpg'; choose one of: png,
            svg, pdf``.
    """
    target = Path(path)
    ext = format_of(target)
    # Fixed metadata, so that writing the same figure twice gives the same svg/pdf bytes.
    metadata = {"png": {"Software": None}, "svg": {"Date": None}, "pdf": {"CreationDate": None}}
    fig.savefig(target, format=ext, dpi=150, bbox_inches="tight", metadata=metadata[ext])
    return target
