"""Small files the unit must find again after a power cut: replaced whole, and on the card
before the caller goes on (the seq reservation, the heartbeat counter, the intake)."""
from __future__ import annotations

import errno
import os
from pathlib import Path


def replace_durably(path: Path, text: str) -> None:
    """Make ``path`` hold ``text``: a reader, or the card after a power cut, sees the old file
    or the new one, never a mix; when this returns the new one is flushed, and so is the
    rename.  Raises OSError."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    sync_folder(path.parent)


def sync_folder(folder: Path) -> None:
    """Flush ``folder``'s entries (a file made or renamed there).  A file system that cannot
    flush a folder (EINVAL) is let be: the rename is atomic all the same."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
    finally:
        os.close(fd)
