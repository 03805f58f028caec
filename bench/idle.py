"""An idle agent: CPU time and wake-ups of ``blankspot run`` with nothing to do, and the start-up imports.

``blankspot run`` runs as a real process with the simulated source at one reading a minute,
connected to a local Mosquitto, for ``--seconds``.  After a settling moment (connect, the
first reading, the first state file) it is measured over that window:

- CPU: utime + stime of the whole process from ``/proc/<pid>/stat``, over the wall time, in
  per cent of one core;
- wake-ups: voluntary context switches of all its threads (``/proc/<pid>/task/*/status``),
  per second: each is a sleep that ended.

Then the imports of ``blankspot --help`` and ``blankspot run --check``: the total of the
top-level entries of ``python -X importtime`` (the interpreter's own ``site`` included) and the
wall time of the process, medians of ``--import-runs`` runs after one warm-up, the trees and
commands taking turns.  The modules
are compiled once into a cache of the bench's own (``PYTHONPYCACHEPREFIX``), as an installed
unit has them; a tree run without bytecode would measure the compiler instead.

With ``--against DIR`` (an older checkout: ``git archive <rev> | tar -x -C DIR``) the same is
measured for the code in DIR, its agent running beside this one's in the same window.

    python bench/idle.py                         # 60 s idle, 7 import runs each
    python bench/idle.py --against /tmp/before   # and the older code, for the figures in docs/benchmarks.md
    python bench/idle.py --quick                 # a smoke run: 10 s, 3 import runs
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from _common import REPO, machine_lines, open_run

from agent.sim.broker import LocalBroker, mosquitto_path

SETTLE_S = 5.0
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Idle:
    code: str
    seconds: float
    cpu_pct: float
    wakeups_per_s: float
    threads: int


@dataclass
class Imports:
    code: str
    command: str
    import_ms: float
    wall_ms: float


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0, help="idle window measured (default 60)")
    parser.add_argument("--import-runs", type=int, default=7, help="runs of each command for the imports (default 7)")
    parser.add_argument("--against", type=Path, default=None, metavar="DIR",
                        help="also measure the code checked out in DIR")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 10 s idle, 3 import runs")
    parser.add_argument("--dir", type=Path, default=None, help="where the files go (default bench/results)")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.import_runs = 10.0, 3
    return args


def write_config(path: Path, port: int, device: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([
        "[device]", f'id = "{device}"', "",
        "[buffer]", f'path = "{path.parent / "buffer.db"}"', "",
        "[uplink]", 'host = "127.0.0.1"', f"port = {port}", "",
        "[source]", 'kind = "synthetic"', 'interval = "60s"', "",
        "[budget]", f'ledger = "{path.parent / "usage.db"}"', "",
        "[log]", 'level = "warning"', "",
    ]))
    return path


def environment(code: Path, cache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "NOTIFY_SOCKET",
                                                            "WATCHDOG_USEC", "WATCHDOG_PID")}
    return {**env, "PYTHONPATH": str(code), "PYTHONPYCACHEPREFIX": str(cache)}


def cpu_seconds(pid: int) -> float:
    # The command name in parentheses may hold spaces: the fields counted after its ')'.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def voluntary_switches(pid: int) -> tuple[int, int]:
    """Voluntary context switches summed over the process's threads, and how many threads."""
    total = threads = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            status = task.joinpath("status").read_text()
        except OSError:  # a thread that just ended
            continue
        threads += 1
        total += int(next(line for line in status.splitlines()
                          if line.startswith("voluntary_ctxt_switches")).split()[1])
    return total, threads


def idle_runs(trees: list[tuple[str, Path]], port: int, work: Path, cache: Path, seconds: float) -> list[Idle]:
    """Every tree's agent at once, measured over the same window."""
    agents = []
    for n, (label, code) in enumerate(trees):
        config = write_config(work / f"unit-{n}" / "agent.toml", port, f"idle-unit-{n}")
        log = open(config.with_name("agent.log"), "w")
        process = subprocess.Popen([sys.executable, "-m", "agent", "run", "--config", str(config)], cwd=code,
                                   env=environment(code, cache), stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        agents.append((label, process, log))
    try:
        time.sleep(SETTLE_S)  # connect, the first reading and its batch, the first state file
        for label, process, _log in agents:
            if process.poll() is not None:
                raise SystemExit(f"the agent of {label} ended early (exit {process.returncode}); see its agent.log")
        start = [(cpu_seconds(p.pid), voluntary_switches(p.pid)[0]) for _l, p, _g in agents]
        began = time.monotonic()
        time.sleep(seconds)  # the window: nothing else runs here
        wall = time.monotonic() - began
        runs = []
        for (label, process, _log), (cpu0, switches0) in zip(agents, start):
            switches, threads = voluntary_switches(process.pid)
            runs.append(Idle(label, round(wall, 1), 100 * (cpu_seconds(process.pid) - cpu0) / wall,
                             (switches - switches0) / wall, threads))
        return runs
    finally:
        for _label, process, log in agents:
            process.send_signal(signal.SIGTERM)
        for _label, process, log in agents:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            log.close()


def import_total_ms(stderr: str) -> float:
    total = 0
    for line in stderr.splitlines():
        parts = line.split("|")
        if not line.startswith("import time:") or len(parts) != 3 or "cumulative" in line:
            continue
        if not parts[2].startswith("  "):  # a top-level import: what it pulled in is inside its figure
            total += int(parts[1])
    return total / 1000


def import_runs(trees: list[tuple[str, Path]], config: Path, cache: Path, runs: int) -> list[Imports]:
    """Each command of each tree in turn, round after round, so a noisy moment hits all alike."""
    commands = (("--help", ["--help"]), ("run --check", ["run", "--check", "--config", str(config)]))
    times: dict[tuple[str, str], tuple[list[float], list[float]]] = {}
    for round_ in range(runs + 1):
        for label, code in trees:
            env = environment(code, cache)
            for name, argv in commands:
                command = [sys.executable, "-X", "importtime", "-m", "agent", *argv]
                began = time.perf_counter()
                done = subprocess.run(command, cwd=code, env=env, capture_output=True, text=True, check=True)
                wall = 1000 * (time.perf_counter() - began)
                if round_:  # the first round compiles into the cache
                    imports, walls = times.setdefault((label, name), ([], []))
                    imports.append(import_total_ms(done.stderr))
                    walls.append(wall)
    return [Imports(label, name, statistics.median(imports), statistics.median(walls))
            for (label, name), (imports, walls) in times.items()]


def report(idle: list[Idle], imports: list[Imports]) -> None:
    print(f"\n{'code':<14} {'idle CPU % of a core':>21} {'wake-ups/s':>11} {'threads':>8}")
    for run in idle:
        print(f"{run.code:<14} {run.cpu_pct:>21.3f} {run.wakeups_per_s:>11.1f} {run.threads:>8}")
    print(f"\n{'code':<14} {'command':<12} {'imports ms':>11} {'process ms':>11}")
    for run in imports:
        print(f"{run.code:<14} {run.command:<12} {run.import_ms:>11.1f} {run.wall_ms:>11.1f}")
    print("\ngoals: idle CPU <= 0.2 % of a core; --help and run --check <= 100 ms of imports")


def main() -> None:
    args = parse_args()
    if mosquitto_path() is None:
        raise SystemExit("mosquitto is not installed (apt-get install mosquitto)")
    work = open_run(args.dir, "idle-")
    cache = work / "pycache"
    trees = [("this checkout", REPO)]
    if args.against:
        print(f"--against: {args.against.resolve()}")
        trees.append(("--against", args.against.resolve()))
    broker = LocalBroker("mosquitto", workdir=work / "broker")
    broker.start()
    try:
        print(f"idle: {len(trees)} agent(s), {args.seconds:g} s after {SETTLE_S:g} s settling", flush=True)
        idle = idle_runs(trees, broker.port, work, cache, args.seconds)
    finally:
        broker.stop()
    print(f"imports: {args.import_runs} runs of each command of each tree", flush=True)
    config = write_config(work / "check" / "agent.toml", broker.port, "idle-check")
    imports = import_runs(trees, config, cache, args.import_runs)
    report(idle, imports)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = work.parent / f"idle-{stamp}.json"
    out.write_text(json.dumps({
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine_lines(),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "dir"},
        "idle": [asdict(run) for run in idle], "imports": [asdict(run) for run in imports],
    }, indent=2) + "\n")
    shutil.rmtree(work, ignore_errors=True)
    print(f"\nfigures written to {out}")


if __name__ == "__main__":
    main()
