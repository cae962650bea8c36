"""Paths read from files (a capture's index, the results database) must stay inside their folder.

Such a path is data someone else wrote: a hostile client cannot write it, but a capture or a results
folder copied from elsewhere can name ``../../x.pt``, and ``torch.load`` or the report would then read
a file outside the folder the user pointed at.
"""

from __future__ import annotations

from pathlib import Path

from .errors import FedsynError


class PathEscapeError(FedsynError, ValueError):
    """A relative path read from a file points outside the folder it must stay in."""


def inside(folder: Path, relative: str, *, source: str) -> Path:
    """``folder / relative``, resolved (symbolic links followed); raises ``PathEscapeError`` naming
    ``source`` (where the path was read) when it leads outside ``folder``."""
    root = Path(folder).resolve()
    path = (root / relative).resolve()
    if not path.is_relative_to(root):
        raise PathEscapeError(f"{source} names {relative!r}, which leads outside {root}; refusing to read it")
    return path
