"""A local MQTT broker for demos and tests: Mosquitto when installed, else embedded amqtt.

The broker runs as a child process on a free loopback port.  It can be stopped, killed
and started again on the same port, which is how outages are staged.
"""
from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

log = logging.getLogger(__name__)


class BrokerError(RuntimeError):
    """The local broker could not be started."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 10.0, host: str = "127.0.0.1") -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


class LocalBroker:
    """A broker process on ``127.0.0.1:port``; ``kind`` is ``mosquitto`` or ``amqtt``."""

    def __init__(self, kind: str | None = None, port: int | None = None, workdir: Path | None = None,
                 extra_config: str = "", listener: str | None = None) -> None:
        self.kind = kind or ("mosquitto" if mosquitto_path() else "amqtt")
        self.port = port or free_port()
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="blankspot-broker-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.extra_config = extra_config
        self.listener = listener
        self.process: subprocess.Popen | None = None
        self.log_path = self.workdir / f"{self.kind}.log"

    @property
    def protocol(self) -> str:
        """The newest MQTT version this broker speaks."""
        return "5" if self.kind == "mosquitto" else "3.1.1"

    def _command(self) -> list[str]:
        if self.kind == "mosquitto":
            exe = mosquitto_path()
            if exe is None:
                raise BrokerError("mosquitto is not installed (apt-get install mosquitto)")
            conf = self.workdir / "mosquitto.conf"
            listener = self.listener or f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
            # As root, mosquitto would drop to user "mosquitto" and lose access to our files.
            user = "user root\n" if os.geteuid() == 0 else ""
            persistence = "" if "persistence " in self.extra_config else "persistence false\n"
            conf.write_text(
                f"{listener}\n{user}{persistence}log_dest file {self.log_path}\n"
                f"log_type error\nlog_type warning\nlog_type notice\nlog_type information\n"
                f"max_queued_messages 100000\n{self.extra_config}\n"
            )
            return [exe, "-c", str(conf)]
        conf = self.workdir / "amqtt.yaml"
        conf.write_text(
            "listeners:\n  default:\n    type: tcp\n"
            f"    bind: 127.0.0.1:{self.port}\n"
            "plugins:\n  amqtt.plugins.authentication.AnonymousAuthPlugin:\n    allow_anonymous: true\n"
        )
        # The script sits beside this interpreter in a virtualenv that was never activated.
        exe = shutil.which("amqtt") or shutil.which("amqtt", path=str(Path(sys.executable).parent))
        if exe is None:
            raise BrokerError("neither mosquitto nor amqtt is installed (apt-get install mosquitto, or pip install amqtt)")
        return [exe, "-c", str(conf)]

    def start(self, timeout: float = 15.0) -> "LocalBroker":
        if self.process is not None and self.process.poll() is None:
            return self
        logfile = open(self.workdir / f"{self.kind}.out", "ab")
        self.process = subprocess.Popen(self._command(), stdout=logfile, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True)
        logfile.close()
        if not wait_for_port(self.port, timeout):
            self.kill()
            tail = (self.workdir / f"{self.kind}.out").read_text(errors="replace")[-500:]
            raise BrokerError(f"{self.kind} did not start on port {self.port}: {tail}")
        return self

    def stop(self) -> None:
        self._end(signal.SIGTERM)

    def kill(self) -> None:
        self._end(signal.SIGKILL)

    def _end(self, sig: int) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop, and remove the work folder if this broker made it."""
        self.stop()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> "LocalBroker":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def mosquitto_path() -> str | None:
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).exists()), None
    )
