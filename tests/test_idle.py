"""An idle agent sleeps: the uplink thread and the main loop wake for their deadlines, not on a
fixed short poll, and a reading stored while connected is still published at once.

Counted, not timed: the uplink counts the ends of its waits (``UplinkStats.wakeups``), the
service the turns of its loop, and the kernel the uplink thread's voluntary context
switches.  A short poll would show tens of them in the windows below.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path

from agent.commands.unit import make_service
from agent.sim.broker import LocalBroker
from agent.unit.config import load_config
from tests.support.mqtt_sink import ReadingSink
from tests.support.readings_factory import signal_reading
from tests.support.unit_config import write_config

# A slow source and a long keepalive: nothing is due in the windows below but what a test does.
IDLE = {"source": {"interval": "60s"}, "uplink": {"keepalive": "60s"}}


def voluntary_switches(thread: threading.Thread) -> int:
    status = Path(f"/proc/self/task/{thread.native_id}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("voluntary_ctxt_switches")).split()[1])


def connected_service(tmp_path: Path, broker: LocalBroker):
    config = load_config(write_config(tmp_path / "agent.toml", broker.port, tmp_path / "buffer.db", IDLE))
    service = make_service(config)
    assert service.uplink is not None
    return service, service.uplink


def test_a_connected_uplink_with_nothing_to_send_sleeps(tmp_path: Path, broker: LocalBroker, sink: ReadingSink) -> None:
    service, uplink = connected_service(tmp_path, broker)
    uplink.start()
    try:
        assert uplink.wait_until(lambda: uplink.connected and sink.statuses, 10)
        time.sleep(0.5)  # the subscription's answer and the status's PUBACK land
        assert uplink._thread is not None
        wakeups, switches = uplink.stats.wakeups, voluntary_switches(uplink._thread)
        time.sleep(3.0)  # a window of idleness on a real connection
        wakeups, switches = uplink.stats.wakeups - wakeups, voluntary_switches(uplink._thread) - switches
    finally:
        uplink.stop()
        service.buffer.close()
    print(f"idle 3 s: {wakeups} wakeups, {switches} voluntary context switches")
    assert wakeups <= 2, "nothing is due for 15 s: the thread sleeps through the window"
    assert switches <= 10, "a 50 ms poll would switch some 60 times"


def test_a_reading_stored_while_idle_is_published_at_once(tmp_path: Path, broker: LocalBroker, sink: ReadingSink) -> None:
    arrived: list[float] = []
    sink.client.on_message = (lambda orig: lambda c, u, m: (orig(c, u, m), arrived.append(time.monotonic())))(
        sink.client.on_message)
    service, uplink = connected_service(tmp_path, broker)
    uplink.start()
    try:
        assert uplink.wait_until(lambda: uplink.connected and sink.statuses, 10)
        delays = []
        for n in range(1, 6):
            time.sleep(0.3)  # the thread is deep in a wait with its next deadline seconds away
            arrived.clear()
            stored = time.monotonic()
            service.store([signal_reading()])
            assert sink.wait_for(lambda: len(sink.seqs("unit-1")) >= n, 5)
            delays.append(arrived[-1] - stored)
    finally:
        uplink.stop()
        service.buffer.close()
    print(f"stored -> received at the broker's subscriber: {', '.join(f'{d * 1000:.1f} ms' for d in delays)}")
    assert sink.seqs("unit-1") == [1, 2, 3, 4, 5]
    assert max(delays) < 0.25, "storing wakes the uplink: no reading waits for a timeout"


def test_the_main_loop_turns_for_its_deadlines_only(tmp_path: Path, broker: LocalBroker) -> None:
    service, _uplink = connected_service(tmp_path, broker)
    stop = threading.Event()
    runner = threading.Thread(target=service.run, args=(stop,), name="agent", daemon=True)
    runner.start()
    try:
        time.sleep(0.5)
        turns = service.turns
        time.sleep(4.0)
        turns = service.turns - turns
    finally:
        stop.set()
        service.wake()
        stopped = time.monotonic()
        runner.join(15)
    print(f"idle 4 s: {turns} turns of the main loop; stopped in {time.monotonic() - stopped:.2f} s")
    assert not runner.is_alive()
    # The state file every 2 s and a look at the stop event every second; a 200 ms tick turns 20 times.
    assert turns <= 7
