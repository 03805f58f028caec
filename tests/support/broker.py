"""A real Mosquitto for tests: whether it is installed, and one that asks for a password."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from agent.sim.broker import LocalBroker, free_port, mosquitto_path


def require_mosquitto() -> None:
    if mosquitto_path() is None:
        pytest.fail("mosquitto is not installed; the test command installs it (see README.md, 'Tests')")


@pytest.fixture
def password_broker(tmp_path: Path):
    """Mosquitto with a password file: ``unit-1`` / ``s3cret-Kukar`` and ``centre`` / ``centre-pw``."""
    require_mosquitto()
    passwd = shutil.which("mosquitto_passwd")
    if passwd is None:
        pytest.fail("mosquitto_passwd is missing; it comes with the mosquitto package")
    work = tmp_path / "pwbroker"
    work.mkdir()
    subprocess.run([passwd, "-c", "-b", str(work / "passwd"), "unit-1", "s3cret-Kukar"], check=True)
    subprocess.run([passwd, "-b", str(work / "passwd"), "centre", "centre-pw"], check=True)
    port = free_port()
    b = LocalBroker("mosquitto", workdir=work, listener=(
        f"listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {work / 'passwd'}\n"), port=port).start()
    yield b
    b.kill()
