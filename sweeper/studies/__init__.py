"""The example studies shipped with the package, run by name: ``sweeper run quick``.

The ``*.toml`` files beside this module are package data, copies of the repository's
``studies/*.toml`` (``tests/test_packaging.py`` keeps the two identical), so a user who installed
the package runs the same studies as one in a clone: ``sweeper run quick`` anywhere, ``sweeper run
studies/quick.toml`` in a clone.
"""

from __future__ import annotations

from pathlib import Path

from sweeper.errors import StudyFileError

#: the directory holding the packaged study files.
DIRECTORY = Path(__file__).resolve().parent


def names() -> list[str]:
    """The packaged studies' names (their file names without ``.toml``), sorted."""
    return sorted(p.stem for p in DIRECTORY.glob("*.toml"))


def resolve(study_file: str | Path) -> Path:
    """The study file `study_file` names: an existing path, else a packaged study's name.

    A name is an argument without a directory and without the ``.toml`` suffix (``quick``); an
    existing file always wins over a packaged study of the same name.

    Args:
        study_file: a path to a TOML file, or the name of a packaged study.

    Returns:
        The path to read (for a name: the packaged file).

    Raises:
        StudyFileError: neither a file nor a packaged study; its one problem lists the names.
    """
    path = Path(study_file)
    text = str(study_file)
    is_name = path.suffix != ".toml" and path.name == text
    packaged = DIRECTORY / f"{text}.toml"
    if is_name and packaged.is_file() and not path.is_file():
        return packaged  # `sweeper run quick` beside a directory named quick still means this
    if path.exists():
        return path  # a directory or an unreadable file is reported by the study reader
    what = "no such file, and no packaged study of that name" if is_name else "no such file"
    raise StudyFileError(
        [f"{text}: {what}; packaged studies, run by name (sweeper run quick): {', '.join(names())}"]
    )
