"""Shared fixtures: a real Mosquitto on a free loopback port, a subscriber, collectors; and
the ``long`` marker's rule (skipped unless selected with ``-m long``)."""
from __future__ import annotations

from pathlib import Path

import pytest

from agent.sim.broker import LocalBroker
from tests.support.broker import require_mosquitto
from tests.support.collector import collectors  # noqa: F401  (fixture)
from tests.support.mqtt_sink import ReadingSink

def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``long`` (the fuzz runs' longer profiles) run only when a ``-m``
    expression names them: ``deploy/quickstart.sh test -m long``."""
    if "long" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="a longer profile of a fuzz run: select it with -m long")
    for item in items:
        if item.get_closest_marker("long") is not None:
            item.add_marker(skip)


@pytest.fixture
def broker(tmp_path: Path):
    """A Mosquitto broker with persistence, so sessions survive kill -9 and restarts."""
    require_mosquitto()
    data = tmp_path / "broker"
    data.mkdir()
    b = LocalBroker(
        "mosquitto",
        workdir=data,
        extra_config=f"persistence true\npersistence_location {data}/\nautosave_interval 1\n",
    ).start()
    yield b
    b.kill()


@pytest.fixture
def sink(broker: LocalBroker):
    s = ReadingSink(broker.port).start()
    yield s
    s.stop()

