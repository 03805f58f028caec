"""What the running agent writes to its SD card: bytes and flushes per reading, per day, and the card's life.

The whole agent, as in the field: ``blankspot run`` as a process of its own (the simulated
boat: ``source.kind = "synthetic"``, one reading every ``--interval``, 10 s by default like
a fixed probe), a local Mosquitto, and ``blankspot collect`` storing into SQLite and sending
the unit its confirmations (shipped ``--confirm-interval``).  Each agent keeps everything
it writes to the card (``buffer.path``, its ``-wal``/``-shm``/``.seq``, the usage ledger,
the state file) on a file system of its own: a fresh ext4 on a loop device, mounted
``noatime`` as Raspberry Pi OS mounts its root.  The loop device's counters
(``/sys/block/loopN/stat``) then give exactly what those files cost the card, journal
included: sectors written and flush requests (an ``fsync`` is one).  ``/proc/<pid>/io``
``write_bytes`` of the agent is shown beside them.

Beside them, the file system's floor: a thread overwriting one 4 KiB block of an allocated
file and ``fdatasync``-ing it at the same cadence, on a loop device of its own.  It is what
any design making each reading durable on its own costs this file system (ext4 commits its
journal for it), so it says how far the agent is from what is possible at all.

With ``--against DIR`` a second agent runs the code checked out in DIR (the tree before a
change: ``git archive main | tar -x -C DIR``) at the same time, against the same broker and
collector, on a second loop device: the same minutes, the same readings.

First, for ``--fill`` seconds, each agent takes a reading every 50 ms; then it is killed (as
a power cut would: its write-ahead log stays at the size it grew to) and started again at
``--interval``: the window sees a unit that has run a while, not the first minutes of a
new buffer, whose log grows with every commit.  The agent runs at its real cadence, so nothing is scaled: what happens every minute or
every ten (the usage ledger, checkpoints, the journal's commits) is in the window as it is
in the field.  The window starts after ``--warmup`` (opening the buffer, connecting) and
ends before the agent is stopped.  Per day = the window's figures times 86,400 s / window.

    python bench/card.py                       # 12 minutes, this checkout only
    python bench/card.py --against /tmp/before # the figures in docs/benchmarks.md
    python bench/card.py --quick               # a smoke run (about 2 minutes)

Needs root (loop devices, mount) and mosquitto.  Card life assumes ``--card-gb`` of flash
rated for ``--pe-cycles`` program/erase cycles, and a write amplification of ``--waf`` in the
card's controller (small synchronous writes on a cheap card: several times what is written).
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from _common import REPO, open_run

from agent.shared.reading import parse_time
from agent.sim.broker import LocalBroker

DAY_S = 86_400.0
FIELD_CADENCE_S = 10.0
FILL_INTERVAL_S = 0.05


# -- a card of its own ------------------------------------------------------------------

@dataclass(frozen=True)
class DiskCounters:
    """Cumulative counters of one block device."""

    write_sectors: int
    flushes: int

    def __sub__(self, other: "DiskCounters") -> "DiskCounters":
        return DiskCounters(self.write_sectors - other.write_sectors, self.flushes - other.flushes)


class LoopCard:
    """A fresh ext4 file system on a loop device, mounted at ``mount``."""

    def __init__(self, work: Path, name: str, size_mb: int, options: str) -> None:
        self.image = work / f"{name}.img"
        self.mount = work / name
        self.options = options
        with open(self.image, "wb") as handle:
            handle.truncate(size_mb * 1024 * 1024)
        # Inode tables and journal written now, not by a background thread during the window.
        subprocess.run(["mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", str(self.image)],
                       check=True)
        self.device = subprocess.run(["losetup", "--find", "--show", str(self.image)], check=True,
                                     capture_output=True, text=True).stdout.strip()
        self.mount.mkdir(exist_ok=True)
        subprocess.run(["mount", "-o", options, self.device, str(self.mount)], check=True)

    def counters(self) -> DiskCounters:
        fields = Path(f"/sys/block/{Path(self.device).name}/stat").read_text().split()
        # Fields 7 (sectors written, 512 bytes each) and 16 (flush requests completed).
        return DiskCounters(int(fields[6]), int(fields[15]))

    def settle(self) -> None:
        """Push what the page cache holds for this file system to the device."""
        subprocess.run(["sync", "-f", str(self.mount)], check=False)

    def close(self) -> None:
        subprocess.run(["umount", str(self.mount)], check=False)
        # The device can stay busy for a moment after the unmount.
        for _ in range(20):
            if subprocess.run(["losetup", "-d", self.device], check=False, capture_output=True).returncode == 0:
                break
            time.sleep(0.25)
        self.image.unlink(missing_ok=True)


# -- the file system's own floor ------------------------------------------------------------

class FloorWriter:
    """What one durable write per reading costs on this file system, whatever writes it: a
    4 KiB block of an allocated file overwritten and ``fdatasync``-ed every ``interval``
    seconds, on a loop card of its own, beside the agents and in the same minutes."""

    BLOCK = 4096
    BLOCKS = 256

    def __init__(self, card: LoopCard, interval: float) -> None:
        self.card = card
        self.interval = interval
        self.path = card.mount / "floor.dat"
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        os.write(fd, b"\0" * self.BLOCK * self.BLOCKS)
        os.fsync(fd)
        self.fd = fd
        self.times: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="floor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        n = 0
        while not self._stop.wait(self.interval):
            os.pwrite(self.fd, bytes([n % 251]) * self.BLOCK, (n % self.BLOCKS) * self.BLOCK)
            os.fdatasync(self.fd)
            self.times.append(time.time())
            n += 1

    def writes_between(self, start: float, end: float) -> int:
        return sum(start <= t < end for t in self.times)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        os.close(self.fd)


# -- one agent ----------------------------------------------------------------------------

class AgentProcess:
    """``blankspot run`` of the code in ``tree``, its card files on ``card``."""

    def __init__(self, name: str, tree: Path, card: LoopCard, work: Path, port: int, interval: float,
                 runtime_dir: Path) -> None:
        self.name = name
        self.tree = tree
        self.card = card
        self.buffer = card.mount / "buffer.db"
        self.config = work / f"{name}.toml"
        self.port = port
        self.set_interval(interval)
        self.log_path = work / f"{name}.log"
        self.runtime_dir = runtime_dir
        self.process: subprocess.Popen | None = None

    def set_interval(self, interval: float) -> None:
        """The reading period of the agent's next start."""
        card, name, port = self.card, self.name, self.port
        self.config.write_text("\n".join([
            "[device]", f'id = "card-{name}"',
            "[buffer]", f'path = "{self.buffer}"',
            "[source]", 'kind = "synthetic"', f'interval = "{interval}s"',
            "[uplink]", 'host = "127.0.0.1"', f"port = {port}",
            "[budget]", f'ledger = "{card.mount / "usage.db"}"',
            "[log]", 'level = "info"', "",
        ]))

    def start(self) -> None:
        self.runtime_dir.mkdir(parents=True, exist_ok=True)
        # As systemd runs it: RuntimeDirectory=blankspot hands the agent a folder in /run (tmpfs).
        env = {**os.environ, "PYTHONPATH": str(self.tree), "RUNTIME_DIRECTORY": str(self.runtime_dir)}
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "agent", "run", "--config", str(self.config)],
                                            cwd=self.tree, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=log, start_new_session=True)

    def write_bytes(self) -> int:
        assert self.process is not None
        for line in Path(f"/proc/{self.process.pid}/io").read_text().splitlines():
            if line.startswith("write_bytes:"):
                return int(line.split()[1])
        return 0

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """As a power cut would stop it: the write-ahead log stays as it is, at its size."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    def readings_between(self, start: float, end: float) -> tuple[int, int]:
        """Readings taken in the window, and how many of them the centre confirmed.

        Asked of the file in plain SQL (the columns every layout has), so that a buffer written
        by the tree before a change is read as well as this one's."""
        taken = confirmed = 0
        conn = sqlite3.connect(f"file:{self.buffer}?mode=ro", uri=True)
        try:
            rows = conn.execute("SELECT time, confirmed_at IS NOT NULL FROM readings WHERE kind = 'signal'").fetchall()
        finally:
            conn.close()
        for time_text, is_confirmed in rows:
            if start <= parse_time(time_text).timestamp() < end:
                taken += 1
                confirmed += is_confirmed
        return taken, confirmed


@dataclass(frozen=True)
class Figures:
    name: str
    window_s: float
    readings: int
    confirmed: int
    disk: DiskCounters
    process_bytes: int

    @property
    def bytes(self) -> int:
        return self.disk.write_sectors * 512

    def per_reading(self, value: float) -> float:
        return value / self.readings if self.readings else float("nan")

    def per_day(self, value: float) -> float:
        return value * DAY_S / self.window_s


def card_life_years(bytes_per_day: float, card_gb: float, pe_cycles: float, waf: float) -> float:
    if bytes_per_day <= 0:
        return float("inf")
    return card_gb * 1e9 * pe_cycles / (bytes_per_day * waf) / 365.0


# -- the run ------------------------------------------------------------------------------

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--against", type=Path, default=None, metavar="DIR",
                        help="also run the agent checked out in DIR, at the same time, for comparison")
    parser.add_argument("--minutes", type=float, default=12.0, help="length of the measured window (default 12)")
    parser.add_argument("--warmup", type=float, default=40.0, help="seconds before the window starts (default 40)")
    parser.add_argument("--fill", type=float, default=30.0,
                        help="seconds of readings every 50 ms first, then the agent is killed and started at "
                             "--interval, so that the window sees a unit that has run a while (default 30; 0: a "
                             "fresh buffer)")
    parser.add_argument("--interval", type=float, default=FIELD_CADENCE_S,
                        help="seconds between readings (default 10, a fixed probe's)")
    parser.add_argument("--mount-options", default="noatime", help="ext4 mount options (default noatime)")
    parser.add_argument("--card-gb", type=float, default=32.0, help="card capacity for the life estimate (default 32)")
    parser.add_argument("--pe-cycles", type=float, default=1000.0,
                        help="program/erase cycles the card's flash is rated for (default 1000)")
    parser.add_argument("--waf", type=float, default=4.0,
                        help="write amplification in the card (flash written per byte the host writes; default 4)")
    parser.add_argument("--dir", type=Path, default=None,
                        help="folder for the file system images (removed at the end) and the logs (default bench/results)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: a 1-minute window")
    args = parser.parse_args(argv)
    if args.quick:
        args.minutes, args.warmup, args.fill = 1.0, 20.0, 10.0
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("bench/card.py needs root: it makes loop devices and mounts them", file=sys.stderr)
        return 2
    for tool in ("mkfs.ext4", "losetup", "mount"):
        if shutil.which(tool) is None:
            print(f"bench/card.py needs {tool}", file=sys.stderr)
            return 2
    work = open_run(args.dir, "card-")
    runtime = Path(tempfile.mkdtemp(prefix="blankspot-run-", dir="/dev/shm"))
    trees = [("this", REPO)] + ([("against", args.against.resolve())] if args.against else [])
    print(f"{args.fill:g} s of readings every {FILL_INTERVAL_S:g} s, agent killed and started again; "
          f"window {args.minutes:g} min after {args.warmup:g} s warm-up; one reading every {args.interval:g} s; "
          f"ext4 on a loop device, -o {args.mount_options}; state folder (RUNTIME_DIRECTORY) on tmpfs")
    cards: list[LoopCard] = []
    agents: list[AgentProcess] = []
    broker = LocalBroker(workdir=work / "broker")
    collector: subprocess.Popen | None = None
    try:
        broker.start()
        collector_log = open(work / "collector.log", "ab")
        collector = subprocess.Popen(
            [sys.executable, "-m", "agent", "collect", "--broker", f"mqtt://127.0.0.1:{broker.port}",
             "--db", f"sqlite://{work / 'centre.db'}", "--client-id", "card-collector"],
            cwd=REPO, stdin=subprocess.DEVNULL, stdout=collector_log, stderr=collector_log, start_new_session=True)
        for name, tree in trees:
            card = LoopCard(work, name, 512, args.mount_options)
            cards.append(card)
            agents.append(AgentProcess(name, tree, card, work, broker.port, args.interval, runtime / name))
        floor_card = LoopCard(work, "floor", 512, args.mount_options)
        cards.append(floor_card)
        floor = FloorWriter(floor_card, args.interval)
        if args.fill > 0:
            # A unit that has run a while: its write-ahead log has grown to the size it keeps and is
            # rewritten in place.  A fresh one grows it commit by commit, and each growth costs a
            # commit of the file system's journal too: the first hundred-odd readings after a
            # start, not a day's.
            for agent in agents:
                agent.set_interval(FILL_INTERVAL_S)
                agent.start()
            time.sleep(args.fill)
            for agent in agents:
                agent.kill()
                agent.set_interval(args.interval)
        for agent in agents:
            agent.start()
        floor.start()
        time.sleep(args.warmup)
        for card in cards:
            card.settle()
        start_wall = time.time()
        before = [(card.counters(), agent.write_bytes()) for card, agent in zip(cards, agents)]
        floor_before = floor_card.counters()
        deadline = time.monotonic() + args.minutes * 60
        while time.monotonic() < deadline:
            dead = [agent.name for agent in agents if not agent.alive()]
            if dead:
                raise RuntimeError(f"agent {dead[0]} stopped; see {work}/{dead[0]}.log")
            time.sleep(1.0)
        for card in cards:
            card.settle()
        end_wall = time.time()
        after = [(card.counters(), agent.write_bytes()) for card, agent in zip(cards, agents)]
        floor_after = floor_card.counters()
        floor.stop()
        for agent in agents:
            agent.stop()
        results = []
        for agent, (disk0, io0), (disk1, io1) in zip(agents, before, after):
            taken, confirmed = agent.readings_between(start_wall, end_wall)
            results.append(Figures(agent.name, end_wall - start_wall, taken, confirmed, disk1 - disk0, io1 - io0))
        results.append(Figures("floor", end_wall - start_wall, floor.writes_between(start_wall, end_wall), 0,
                               floor_after - floor_before, floor.writes_between(start_wall, end_wall) * FloorWriter.BLOCK))
        report(results, args)
    finally:
        for agent in agents:
            agent.stop()
        if collector is not None and collector.poll() is None:
            collector.send_signal(signal.SIGTERM)
            try:
                collector.wait(30)
            except subprocess.TimeoutExpired:
                collector.kill()
        broker.stop()
        for card in cards:
            card.close()
        shutil.rmtree(runtime, ignore_errors=True)
    print(f"logs in {work}")
    return 0


def report(results: list[Figures], args: argparse.Namespace) -> None:
    print()
    print(f"{'tree':8} {'readings':>8} {'confirmed':>9} {'KB/reading':>10} {'flush/reading':>13} "
          f"{'MB/day':>7} {'flush/day':>9} {'proc KB/reading':>15} {'card life':>10}")
    for r in results:
        kb = r.per_reading(r.bytes) / 1024
        flushes = r.per_reading(r.disk.flushes)
        mb_day = r.per_day(r.bytes) / 1e6
        life = card_life_years(r.per_day(r.bytes), args.card_gb, args.pe_cycles, args.waf)
        print(f"{r.name:8} {r.readings:8d} {r.confirmed:9d} {kb:10.1f} {flushes:13.2f} {mb_day:7.1f} "
              f"{r.per_day(r.disk.flushes):9.0f} {r.per_reading(r.process_bytes) / 1024:15.1f} {life:8.1f} y")
    if args.interval != FIELD_CADENCE_S:
        print(f"(readings every {args.interval:g} s, not 10 s: per reading mixes per-reading and per-minute "
              "costs at this cadence; per day is for this cadence)")
    print(f"card life: {args.card_gb:g} GB x {args.pe_cycles:g} P/E cycles / (bytes per day x write "
          f"amplification {args.waf:g}); the card's own wear levelling assumed perfect")
    print("floor: one 4 KiB block overwritten and fdatasync-ed per reading, nothing else: what any design "
          "with one durable write per reading costs this file system")
    agents = [r for r in results if r.name != "floor"]
    if len(agents) == 2 and agents[0].bytes and agents[0].disk.flushes:
        this, against = agents
        bytes_ratio = against.per_reading(against.bytes) / this.per_reading(this.bytes)
        flush_ratio = against.per_reading(against.disk.flushes) / this.per_reading(this.disk.flushes)
        print(f"per reading, --against writes {bytes_ratio:.1f}x the bytes and {flush_ratio:.1f}x the flushes "
              "of this checkout")


if __name__ == "__main__":
    sys.exit(main())
