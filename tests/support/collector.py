"""``blankspot collect`` as a child process, and what its database holds, for scenario tests."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from agent.centre.store import open_store
from agent.shared.polling import wait_until

REPO = Path(__file__).resolve().parent.parent.parent


class CollectorProcess:
    """``python -m agent collect`` as a child process, its log in a file."""

    def __init__(self, tmp_path: Path, port: int, db: str, client_id: str = "collector-1", *extra: str,
                 env: dict[str, str] | None = None) -> None:
        self.env = None if env is None else {**os.environ, **env}
        self.command = [sys.executable, "-m", "agent", "collect", "--broker", f"mqtt://127.0.0.1:{port}",
                        "--db", db, "--client-id", client_id, "--stats-interval", "1s", *extra]
        self.log_path = tmp_path / f"{client_id}.log"
        self.process: subprocess.Popen | None = None
        self.starts = 0

    def start(self, timeout: float = 20.0) -> "CollectorProcess":
        """Start, and return once it has subscribed (so the broker holds its messages from now on)."""
        before = self.log().count("subscribed to")
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=REPO,
                                            env=self.env)
        self.starts += 1
        ok = wait_until(lambda: self.log().count("subscribed to") > before or self.process.poll() is not None, timeout)
        assert ok and self.process.poll() is None, f"collector did not subscribe:\n{self.log()[-3000:]}"
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM; the exit status."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def pause(self) -> None:
        """SIGSTOP: a collector that has fallen behind (the broker queues its messages meanwhile)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def close(self) -> None:
        if self.alive():
            self.kill()


@pytest.fixture
def collectors():
    made: list[CollectorProcess] = []
    yield made
    for c in made:
        c.close()


def stored_keys(db: str) -> list[tuple[str, int]]:
    with open_store(db) as store:
        return store.reading_keys()


def counts(db: str) -> dict[str, int]:
    with open_store(db) as store:
        return store.counts()


def wait_counts(db: str, predicate, timeout: float, what: str, *procs: CollectorProcess) -> dict[str, int]:
    seen: dict[str, int] = {}

    def check() -> bool:
        seen.update(counts(db))
        return predicate(seen)

    if not wait_until(check, timeout, interval=0.2):
        logs = "\n".join(p.log()[-2000:] for p in procs)
        pytest.fail(f"{what}: not reached within {timeout:g}s; counts {seen}\n{logs}")
    return seen


