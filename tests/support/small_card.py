"""A file system small enough to fill up for real, for the tests of a full card."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Iterator

import pytest


@pytest.fixture
def small_card(tmp_path: Path) -> Iterator[Path]:
    """A real 16 MB filesystem (tmpfs) for the buffer, so that it can really fill up."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem needs root (the test command runs as root in CI)")
    card = tmp_path / "card"
    card.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(card)], check=True)
    yield card
    subprocess.run(["umount", "-l", str(card)], check=False)


def fill(card: Path) -> Path:
    """Fill the filesystem to the last byte; returns the filler file."""
    filler = card / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        for chunk in (65536, 1):
            try:
                while True:
                    os.write(fd, b"\0" * chunk)
            except OSError:
                pass
    finally:
        os.close(fd)
    return filler
