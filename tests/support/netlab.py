"""A link lab in network namespaces: a client, a server, and a cellular link between them.

::

    client ns                 middle ns ("the link")                   server ns
    c0 10.77.0.1  <-veth->  m0 ── link_emulator (delay, jitter, loss) ── m1  <-veth->  s0 10.77.0.2
                            tbf on m0 egress (down)       tbf on m1 egress (up)

The middle namespace bridges its two interfaces at layer 2 with :mod:`tests.support.link_emulator`
(the kernel here has no ``netem``); ``tbf`` on its egress interfaces sets the rate.  Client and
server are in one IPv4 subnet with static neighbour entries (no ARP through the lossy link,
so the first probe is not slower than the others) and IPv6 off (no stray neighbour traffic).
Offloads are off on every veth end: the emulator forwards frames as they are, so they must be
at most MTU-sized and carry real checksums.

Link figures are round-trip figures, what a ping across the link sees: ``delay_ms`` is the
added round-trip time (half each way), ``jitter_ms`` bounds the round-trip variation
(``delay ± jitter``, uniform per direction; frames keep their order, which raises the mean a
little: about 1 ms at 300 ± 30 ms with probes 20 ms apart), ``loss_pct`` is the chance a
request/reply round trip is lost (split evenly between the directions).  ``rate_mbit``
shapes both directions (``shape`` can give the uplink its own rate).

Usage::

    with NetLab(delay_ms=50.0, jitter_ms=0.0, loss_pct=0.0, rate_mbit=None, seed=1) as lab:
        lab.run(lab.client_ns, [sys.executable, "-m", "agent", "measure", "latency", "--json",
                                "--target", lab.server_ip])

Also: ``NetLab(reorder=True)`` lets jitter reorder frames; ``lab.link_stats()`` gives the
emulator's counters (forwarded, lost, queue drops per direction) and the lateness of its
releases; ``lab.accept_tcp(port)`` starts a listener in the server namespace that accepts and
closes every connection; ``lab.shape(rate, up_mbit=..., queue_ms=...)`` sets an asymmetric
rate and the bottleneck queue (default 200 ms of traffic, tail drop).

Everything the lab creates (namespaces, interfaces, processes) is removed when the ``with``
block ends, also when a test failed; namespaces left by a killed earlier run are removed
when the next lab starts.  Needs root, ``ip``/``tc`` (iproute2) and ``ethtool``;
:func:`require_netlab` fails the test with a clear message when they are missing.
"""
from __future__ import annotations

import itertools
import json
import logging
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import pytest

from agent.sim.broker import LocalBroker

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "bslab-"
CLIENT_IP = "10.77.0.1"
SERVER_IP = "10.77.0.2"
PREFIX_LEN = 24
CLIENT_IF, MID_CLIENT_IF, MID_SERVER_IF, SERVER_IF = "c0", "m0", "m1", "s0"
_counter = itertools.count(1)
_ACCEPTOR = """
import socket, sys
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("0.0.0.0", int(sys.argv[1])))
server.listen(128)
while True:
    server.accept()[0].close()
"""
_NAME_RE = re.compile(rf"^{re.escape(PREFIX)}(\d+)-\d+-[cms]$")
INSTALL_HINT = "the test command installs it (deploy/quickstart.sh test)"


def require_netlab(firewall: bool = False) -> None:
    """Fail the test, saying what is missing, unless a :class:`NetLab` can be built here."""
    if os.geteuid() != 0:
        pytest.fail("the network-namespace link lab needs root (it creates namespaces, veths and qdiscs)")
    for tool, package in (("ip", "iproute2"), ("tc", "iproute2"), ("ethtool", "ethtool")):
        if shutil.which(tool) is None:
            pytest.fail(f"'{tool}' is not installed (package {package}); {INSTALL_HINT}")
    if firewall and firewall_tool() is None:
        pytest.fail(f"neither 'nft' nor 'iptables' is installed (package nftables); {INSTALL_HINT}")


def firewall_tool() -> str | None:
    for tool in ("nft", "iptables"):
        if shutil.which(tool):
            return tool
    return None


def _sh(argv: Sequence[str], check: bool = True, timeout: float = 20.0) -> subprocess.CompletedProcess:
    result = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: exit {result.returncode}: {result.stderr.strip() or result.stdout.strip()}")
    return result


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_namespace_processes(ns: str) -> None:
    pids = _sh(["ip", "netns", "pids", ns], check=False).stdout.split()
    for pid in pids:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass


def remove_stale_namespaces() -> list[str]:
    """Delete lab namespaces whose creating process is gone (a run killed with -9)."""
    removed = []
    for line in _sh(["ip", "netns", "list"], check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        match = _NAME_RE.match(name)
        if match and not _pid_alive(int(match.group(1))):
            _kill_namespace_processes(name)
            _sh(["ip", "netns", "delete", name], check=False)
            removed.append(name)
    if removed:
        log.info("removed stale lab namespaces: %s", ", ".join(removed))
    return removed


class NetLab:
    """Three namespaces and an emulated link; a context manager (see the module docstring)."""

    def __init__(self, delay_ms: float = 0.0, jitter_ms: float = 0.0, loss_pct: float = 0.0,
                 rate_mbit: float | None = None, seed: int = 1, reorder: bool = False) -> None:
        self.delay_ms, self.jitter_ms, self.loss_pct = float(delay_ms), float(jitter_ms), float(loss_pct)
        self.rate_mbit = rate_mbit
        self.seed = seed
        self.reorder = reorder
        tag = f"{PREFIX}{os.getpid()}-{next(_counter)}"
        self.client_ns, self.mid_ns, self.server_ns = f"{tag}-c", f"{tag}-m", f"{tag}-s"
        self.client_ip, self.server_ip = CLIENT_IP, SERVER_IP
        self.client_if, self.server_if = CLIENT_IF, SERVER_IF
        self._created: list[str] = []
        self._processes: list[subprocess.Popen] = []
        self._emulator: subprocess.Popen | None = None
        self._firewall: tuple[str, str] | None = None

    # -- lifecycle --------------------------------------------------------------------------

    def __enter__(self) -> "NetLab":
        require_netlab()
        remove_stale_namespaces()
        try:
            self._build()
            self._start_emulator()
            if self.rate_mbit is not None:
                self.shape(self.rate_mbit)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Stop every process the lab started and delete its namespaces (idempotent)."""
        for proc in self._processes + ([self._emulator] if self._emulator else []):
            if proc.poll() is None:
                proc.kill()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                if stream:
                    stream.close()
        self._processes.clear()
        self._emulator = None
        for ns in reversed(self._created):
            _kill_namespace_processes(ns)
            _sh(["ip", "netns", "delete", ns], check=False)
        self._created.clear()

    def _build(self) -> None:
        for ns in (self.client_ns, self.mid_ns, self.server_ns):
            _sh(["ip", "netns", "add", ns])
            self._created.append(ns)
            self._ns_sh(ns, ["sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"])
            _sh(["ip", "-n", ns, "link", "set", "lo", "up"])
        _sh(["ip", "-n", self.mid_ns, "link", "add", MID_CLIENT_IF, "type", "veth", "peer", "name", CLIENT_IF, "netns", self.client_ns])
        _sh(["ip", "-n", self.mid_ns, "link", "add", MID_SERVER_IF, "type", "veth", "peer", "name", SERVER_IF, "netns", self.server_ns])
        ends = ((self.client_ns, CLIENT_IF), (self.mid_ns, MID_CLIENT_IF), (self.mid_ns, MID_SERVER_IF), (self.server_ns, SERVER_IF))
        for ns, ifname in ends:
            self._ns_sh(ns, ["ethtool", "-K", ifname, "tx", "off", "tso", "off", "gso", "off", "gro", "off"])
            _sh(["ip", "-n", ns, "link", "set", ifname, "up"])
        _sh(["ip", "-n", self.client_ns, "addr", "add", f"{CLIENT_IP}/{PREFIX_LEN}", "dev", CLIENT_IF])
        _sh(["ip", "-n", self.server_ns, "addr", "add", f"{SERVER_IP}/{PREFIX_LEN}", "dev", SERVER_IF])
        client_mac, server_mac = self._mac(self.client_ns, CLIENT_IF), self._mac(self.server_ns, SERVER_IF)
        _sh(["ip", "-n", self.client_ns, "neigh", "replace", SERVER_IP, "lladdr", server_mac, "dev", CLIENT_IF, "nud", "permanent"])
        _sh(["ip", "-n", self.server_ns, "neigh", "replace", CLIENT_IP, "lladdr", client_mac, "dev", SERVER_IF, "nud", "permanent"])

    def _ns_sh(self, ns: str, argv: Sequence[str]) -> subprocess.CompletedProcess:
        return _sh(["ip", "netns", "exec", ns, *argv])

    @staticmethod
    def _mac(ns: str, ifname: str) -> str:
        info = json.loads(_sh(["ip", "-n", ns, "-j", "link", "show", ifname]).stdout)
        return info[0]["address"]

    # -- the emulated link ------------------------------------------------------------------

    def _start_emulator(self) -> None:
        argv = [sys.executable, "-m", "tests.support.link_emulator", "--a", MID_CLIENT_IF, "--b", MID_SERVER_IF,
                "--delay-ms", str(self.delay_ms), "--jitter-ms", str(self.jitter_ms),
                "--loss-pct", str(self.loss_pct), "--seed", str(self.seed)]
        if self.reorder:
            argv.append("--reorder")
        self._emulator = self._spawn(self.mid_ns, argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, bufsize=1)
        first = self._emulator_line(timeout=20.0)
        if first != '"ready"':
            raise RuntimeError(f"link emulator did not start: {first!r}")

    def _emulator_line(self, timeout: float) -> str:
        proc = self._emulator
        assert proc is not None and proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], timeout)
        if not ready:
            raise RuntimeError("link emulator does not answer")
        line = proc.stdout.readline()
        if not line:
            proc.wait(timeout=5)
            raise RuntimeError(f"link emulator exited {proc.returncode}: {proc.stderr.read().strip()[-500:] if proc.stderr else ''}")
        return line.strip()

    def _emulator_command(self, command: object) -> Any:
        proc = self._emulator
        if proc is None or proc.stdin is None:
            raise RuntimeError("the link emulator is not running")
        proc.stdin.write(json.dumps(command) + "\n")
        proc.stdin.flush()
        return json.loads(self._emulator_line(timeout=10.0))

    def set_link(self, delay_ms: float | None = None, jitter_ms: float | None = None,
                 loss_pct: float | None = None) -> None:
        """Change the link from now on; frames already on their way keep their delay."""
        change = {k: float(v) for k, v in (("delay_ms", delay_ms), ("jitter_ms", jitter_ms), ("loss_pct", loss_pct)) if v is not None}
        if self._emulator_command(change) != "ok":
            raise RuntimeError(f"link emulator refused {change}")
        for key, value in change.items():
            setattr(self, key, value)

    def link_stats(self) -> dict[str, Any]:
        """The emulator's counters per direction (``up``: client to server, ``down``), with the
        lateness of its releases (``late_ms_p50`` ...) and the current ``params``."""
        return self._emulator_command("stats")

    def shape(self, rate_mbit: float | None = 5.0, *, up_mbit: float | None = None,
              queue_ms: float = 200.0) -> None:
        """Limit the link's rate with ``tbf`` (both directions, or ``up_mbit`` for client to
        server); ``None`` removes the limit.  ``queue_ms`` sizes the bottleneck queue."""
        up = rate_mbit if up_mbit is None else up_mbit
        for ifname, rate in ((MID_CLIENT_IF, rate_mbit), (MID_SERVER_IF, up)):
            if rate is None:
                _sh(["tc", "-n", self.mid_ns, "qdisc", "del", "dev", ifname, "root"], check=False)
                continue
            bytes_per_s = rate * 1e6 / 8
            # At least a few full frames, else tbf cannot pass an MTU-sized frame at once;
            # at most ~4 ms of traffic, so a short measurement is not inflated by the burst.
            burst = max(4 * 1514, int(bytes_per_s * 0.004))
            _sh(["tc", "-n", self.mid_ns, "qdisc", "replace", "dev", ifname, "root", "tbf",
                 "rate", f"{rate}mbit", "burst", str(burst), "latency", f"{queue_ms}ms"])
        self.rate_mbit = rate_mbit

    def block_icmp(self) -> None:
        """Drop ICMP echo requests arriving at the server, as many cellular networks do."""
        require_netlab(firewall=True)
        tool = firewall_tool()
        if tool == "nft":
            rules = ("table inet bslab {\n chain input {\n  type filter hook input priority 0; policy accept;\n"
                     "  icmp type echo-request drop\n }\n}\n")
            result = subprocess.run(["ip", "netns", "exec", self.server_ns, "nft", "-f", "-"], input=rules,
                                    capture_output=True, text=True, timeout=20)
            if result.returncode != 0:
                raise RuntimeError(f"nft: {result.stderr.strip()}")
        else:
            self._ns_sh(self.server_ns, ["iptables", "-A", "INPUT", "-p", "icmp", "--icmp-type", "echo-request", "-j", "DROP"])
        self._firewall = (self.server_ns, str(tool))

    # -- running things inside --------------------------------------------------------------

    def _spawn(self, ns: str, argv: Sequence[str], **kw: Any) -> subprocess.Popen:
        kw.setdefault("cwd", str(ROOT))
        env = dict(kw.pop("env", None) or os.environ)
        env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        return subprocess.Popen(["ip", "netns", "exec", ns, *argv], env=env, **kw)

    def run(self, ns: str, argv: Sequence[str], timeout: float = 60.0, **kw: Any) -> subprocess.CompletedProcess:
        """Run ``argv`` in namespace ``ns`` to its end; output captured as text."""
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        kw.setdefault("text", True)
        proc = self.popen(ns, argv, **kw)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            raise RuntimeError(f"{argv} in {ns} did not finish in {timeout} s; output: {out!r} {err!r}") from None
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    def popen(self, ns: str, argv: Sequence[str], **kw: Any) -> subprocess.Popen:
        """Start ``argv`` in namespace ``ns``; the lab kills it on exit if it still runs."""
        proc = self._spawn(ns, argv, **kw)
        self._processes.append(proc)
        return proc

    def accept_tcp(self, port: int, ns: str | None = None) -> subprocess.Popen:
        """A TCP listener on ``port`` (server namespace by default) that accepts every
        connection and closes it: a stand-in for a broker when only the handshake matters."""
        proc = self.popen(ns or self.server_ns, [sys.executable, "-c", _ACCEPTOR, str(port)])
        self.wait_tcp(ns or self.server_ns, port)
        return proc

    def wait_tcp(self, ns: str, port: int, timeout: float = 10.0) -> None:
        """Wait until something listens on TCP ``port`` in namespace ``ns``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = _sh(["ip", "netns", "exec", ns, "ss", "-Hltn", f"sport = :{port}"], check=False).stdout
            if out.strip():
                return
            time.sleep(0.05)
        raise RuntimeError(f"nothing listens on TCP port {port} in {ns} after {timeout} s")


LAB_BROKER_PORT = 1883


class BrokerInNamespace(LocalBroker):
    """``LocalBroker``'s Mosquitto (same configuration), started inside a lab namespace and
    listening on every address there: the server side of the emulated link."""

    def __init__(self, lab: NetLab, ns: str, workdir: Path) -> None:
        super().__init__("mosquitto", port=LAB_BROKER_PORT, workdir=workdir,
                         listener=f"listener {LAB_BROKER_PORT} 0.0.0.0\nallow_anonymous true\n")
        self.lab, self.ns = lab, ns

    def _command(self) -> list[str]:
        return ["ip", "netns", "exec", self.ns, *super()._command()]

    def start(self, timeout: float = 15.0) -> "BrokerInNamespace":
        with open(self.workdir / "mosquitto.out", "ab") as out:
            self.process = subprocess.Popen(self._command(), stdout=out, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True)
        self.lab.wait_tcp(self.ns, self.port, timeout)
        return self
