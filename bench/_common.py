"""What both benchmarks need: the same readings, where the files live, and the machine's facts."""
from __future__ import annotations

import os
import platform
import sqlite3
import sys
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    # `python bench/x.py` puts bench/ first on sys.path, not the repo root.
    sys.path.insert(0, str(REPO))

from agent.shared.reading import Reading  # noqa: E402
from agent.sim.scenario import mahakam_scenario  # noqa: E402
from agent.sim.route import mahakam_route  # noqa: E402
from agent.sim.synthetic import SteppedTime, SyntheticSource  # noqa: E402

DEVICE = "bench-unit-1"
DEFAULT_DIR = REPO / "bench" / "results"
START = datetime(2026, 11, 24, 0, 0, 0, tzinfo=timezone.utc)


def synthetic_readings(count: int, interval_s: float = 10.0, speed_kmh: float = 15.0) -> list[Reading]:
    """``count`` readings of a boat on the Mahakam, one every ``interval_s``, in and out of coverage."""
    time = SteppedTime(START)
    source = SyntheticSource(DEVICE, mahakam_route(), mahakam_scenario(), speed_kmh, time)
    readings = []
    for _ in range(count):
        readings.append(source.read())
        time.elapsed += interval_s
    return readings


def work_dir(requested: Path | None) -> Path:
    """Where benchmark files go: on a real disk, since tmpfs would hide every write."""
    path = (requested or DEFAULT_DIR).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass(frozen=True)
class Mount:
    point: str
    source: str
    fstype: str
    options: str


def mount_of(path: Path) -> Mount:
    """The /proc/mounts entry holding ``path`` (the longest matching mount point)."""
    target = str(path.resolve())
    best = Mount("/", "?", "?", "")
    with open("/proc/mounts") as handle:
        for line in handle:
            source, point, fstype, options = line.split()[:4]
            point = point.replace("\\040", " ")
            inside = target == point or target.startswith(point.rstrip("/") + "/")
            if inside and len(point) >= len(best.point):
                best = Mount(point, source, fstype, options)
    return best


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_lines() -> list[str]:
    return [
        f"machine: {cpu_model()}, {os.cpu_count()} cores, Linux {platform.release()}",
        f"python {platform.python_version()}, SQLite {sqlite3.sqlite_version}",
    ]


def ratio(ours: float, theirs: float) -> str:
    return f"{ours / theirs:.2f}x" if theirs else "n/a"


def open_run(requested: Path | None, prefix: str) -> Path:
    """Print the machine and where the files go; a fresh folder for this run there."""
    folder = work_dir(requested)
    for line in machine_lines():
        print(line)
    mount = mount_of(folder)
    print(f"files in {folder} ({mount.fstype} on {mount.source})", flush=True)
    return Path(tempfile.mkdtemp(dir=folder, prefix=prefix))
