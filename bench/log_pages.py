"""What one reading writes to the buffer's write-ahead log, page by page, and what that costs.

In a process of its own per tree, a ``ReadingBuffer`` does what the agent does for each
reading at live cadence: append it, lease it, the broker's acknowledgement, and every 30
readings (a confirmation every 5 minutes at one reading per 10 s) the centre's confirmation.
After ``--warm`` such cycles the log is checkpointed and automatic checkpoints are turned off;
then ``--cycles`` cycles run and the log is read back frame by frame: each frame's page is
named by the b-tree it belongs to (SQLite's ``dbstat``), each commit is where a frame carries
the database's size.  Printed per reading: log frames, commits, the b-trees written, and the
process's ``write_bytes`` (``/proc/self/io``: page-cache pages dirtied).

``--cadence S`` also runs ``--cadence-cycles`` cycles S seconds apart with automatic
checkpoints on, as the agent runs, and gives ``write_bytes`` per reading at that pace (the
kernel writes back and cleans pages meanwhile, so they are dirtied and counted again);
``--exclusive`` adds a run of that with ``PRAGMA locking_mode=EXCLUSIVE`` (no ``-shm`` file).

    python bench/log_pages.py                          # this tree
    python bench/log_pages.py --against /tmp/before    # and the tree before a change
    python bench/log_pages.py --cadence 10 --exclusive # at live cadence too (about 4 minutes)
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

from _common import REPO, open_run

# Runs with PYTHONPATH set to the tree measured; prints one JSON object.
_CHILD = textwrap.dedent("""
    import collections, json, os, sqlite3, struct, sys, time
    from pathlib import Path
    from agent.shared.protocol import Confirmation
    from agent.unit.buffer import ReadingBuffer
    from tests.support.readings_factory import signal_reading

    folder, warm, cycles, cadence, exclusive = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5] == "1"

    def write_bytes():
        for line in open("/proc/self/io"):
            if line.startswith("write_bytes"):
                return int(line.split()[1])

    path = folder / "buffer.db"
    if exclusive:  # before the agent's code opens it: the wal-index then lives in memory
        sqlite3.connect(path).execute("PRAGMA page_size=1024").connection.close()
        real_connect = sqlite3.connect
        def connect(*args, **kwargs):
            conn = real_connect(*args, **kwargs)
            conn.execute("PRAGMA locking_mode=EXCLUSIVE")
            return conn
        sqlite3.connect = connect
    buf = ReadingBuffer(path, "unit-1")
    rev = 0
    def cycle(i):
        global rev
        stored = buf.append(signal_reading())
        batch = buf.take(10)
        if batch is not None:
            buf.ack(batch)
        if i % 30 == 29:
            rev += 1
            buf.apply_confirmation(Confirmation("unit-1", rev, stored.seq, stored.seq))
    for i in range(warm):
        cycle(i)
    result = {"shm": Path(str(path) + "-shm").exists()}
    if cadence > 0:
        before = write_bytes()
        for i in range(cycles):
            cycle(i)
            time.sleep(cadence)
        result["write_bytes_per_reading"] = (write_bytes() - before) / cycles
        print(json.dumps(result))
        sys.exit(0)
    buf.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    buf.conn.execute("PRAGMA wal_autocheckpoint=0")
    before = write_bytes()
    for i in range(cycles):
        cycle(i)
    result["write_bytes_per_reading"] = (write_bytes() - before) / cycles
    owners = dict(sqlite3.connect(f"file:{path}?mode=ro", uri=True).execute("SELECT pageno, name FROM dbstat"))
    log = Path(str(path) + "-wal").read_bytes()
    page_size = struct.unpack(">I", log[8:12])[0]
    frames, commits, written = 0, 0, collections.Counter()
    offset = 32
    while offset + 24 + page_size <= len(log):
        page, size = struct.unpack(">II", log[offset:offset + 8])
        frames += 1
        written["page 1 (header)" if page == 1 else owners.get(page, "freed")] += 1
        commits += size != 0
        offset += 24 + page_size
    result.update(page_size=page_size, frames_per_reading=frames / cycles, commits_per_reading=commits / cycles,
                  log_bytes_per_reading=frames * (24 + page_size) / cycles,
                  written_per_reading={name: n / cycles for name, n in written.most_common()})
    print(json.dumps(result))
""")


def measure(tree: Path, folder: Path, warm: int, cycles: int, cadence: float = 0.0, exclusive: bool = False) -> dict:
    env = {**os.environ, "PYTHONPATH": f"{tree}{os.pathsep}{REPO}"}
    done = subprocess.run([sys.executable, "-c", _CHILD, str(folder), str(warm), str(cycles), str(cadence),
                           "1" if exclusive else "0"], env=env, cwd=tree, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"bench/log_pages.py: the run in {tree} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", type=Path, default=None, metavar="DIR", help="also measure the tree in DIR")
    parser.add_argument("--warm", type=int, default=300, help="cycles before counting (default 300)")
    parser.add_argument("--cycles", type=int, default=600, help="cycles counted (default 600)")
    parser.add_argument("--cadence", type=float, default=0.0, metavar="SECONDS",
                        help="also measure write_bytes with cycles this far apart")
    parser.add_argument("--cadence-cycles", type=int, default=24, help="cycles at --cadence (default 24)")
    parser.add_argument("--exclusive", action="store_true", help="with --cadence: a run with locking_mode=EXCLUSIVE too")
    parser.add_argument("--dir", type=Path, default=None, help="where the files go (default bench/results)")
    args = parser.parse_args()
    run = open_run(args.dir, "log-pages-")
    trees = [("this checkout", REPO)] + ([("--against", args.against.resolve())] if args.against else [])
    print(f"{args.warm} cycles to warm up, then {args.cycles} counted: append, lease, acknowledge; "
          "a confirmation every 30\n")
    print(f"{'tree':<14} {'frames':>7} {'commits':>8} {'log KB':>7} {'write_bytes KiB':>16}  pages written per reading")
    figures = {}
    for name, tree in trees:
        result = measure(tree, Path(tempfile.mkdtemp(dir=run)), args.warm, args.cycles)
        figures[name] = result
        pages = ", ".join(f"{owner} {n:.2f}" for owner, n in result["written_per_reading"].items())
        print(f"{name:<14} {result['frames_per_reading']:>7.2f} {result['commits_per_reading']:>8.2f} "
              f"{result['log_bytes_per_reading'] / 1000:>7.1f} {result['write_bytes_per_reading'] / 1024:>16.1f}  "
              f"{pages}  ({result['page_size']}-byte pages)")
    if args.against:
        ours, theirs = figures["this checkout"], figures["--against"]
        print(f"\nper reading, --against writes {theirs['frames_per_reading'] / ours['frames_per_reading']:.1f}x "
              f"the log frames and dirties {theirs['write_bytes_per_reading'] / ours['write_bytes_per_reading']:.1f}x "
              "the pages of this checkout")
    if args.cadence > 0:
        print(f"\nat one cycle every {args.cadence:g} s, {args.cadence_cycles} cycles, automatic checkpoints on:")
        variants = [(name, tree, False) for name, tree in trees] + ([("this, EXCLUSIVE", REPO, True)]
                                                                   if args.exclusive else [])
        for name, tree, exclusive in variants:
            result = measure(tree, Path(tempfile.mkdtemp(dir=run)), 50, args.cadence_cycles, args.cadence, exclusive)
            print(f"{name:<16} write_bytes {result['write_bytes_per_reading'] / 1024:5.1f} KiB per reading"
                  f"  (-shm file: {'yes' if result['shm'] else 'no'})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
