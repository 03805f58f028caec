"""The ``speedtest`` throughput backend: speedtest-cli (``import speedtest``) as a library.

Two ways to run it:

- ``run_speedtest(None)``: Ookla's public servers, as ``speedtest-cli`` does: the
  configuration and the server list from speedtest.net, the closest servers pinged, the
  best one measured.  Needs the Internet.
- ``run_speedtest("http://host:port/")``: a private "Speedtest Mini" server (our
  :mod:`agent.centre.speed_server` serves that layout), as ``speedtest-cli --mini URL``
  does, through :class:`PrivateSpeedtest`.  Needs nothing but that server.

Either way the test is the library's own: 8 download threads fetching ``random*.jpg`` and
2 (or 8, above 100 kbit/s) upload threads POSTing up to 51 bodies, each direction for its
test length (10 s, speedtest.net's value), however many bytes that costs.

Bytes: ``bytes_used`` is the library's own count, ``results.bytes_received +
results.bytes_sent``.  It counts HTTP bodies as the application reads and writes them, and
so leaves out HTTP and TCP/IP headers, the latency probes, speedtest.net's configuration and
server list, and the download bytes already on their way at the end (delivered and paid
for, read by nobody).  Give :func:`agent.unit.measure.throughput.run_throughput` an interface to
count the bytes on the wire instead.

Two flaws of the library's figures on slow links, measured on a 1 Mbit/s link with a 50 ms
round trip (``bench/throughput.py --as-shipped``), are corrected here without touching its
code, through a handler added to its own URL opener (:class:`ConnectionControl`):

- Upload bytes count when handed to the socket, so whatever waits in 8 send buffers at the
  end counts as sent: the upload figure was 15 to 25% high.  Each connection now keeps at
  most :data:`UNSENT_LIMIT` bytes unsent (``TCP_NOTSENT_LOWAT``).
- A download thread reads 10 KB at a time and checks the clock only between reads, so at
  the end each thread waits for its last 10 KB over a link shared eight ways; the clock
  stops when the slowest does, 0.5 to 1.9 s late: the download figure was 5 to 18% low.
  Every download connection is now shut at the test's end (its length + 0.1 s), so a read
  still waiting returns at once, as the library's own clock check would have had it.
  (Uploads are left to end by themselves: there the late clock makes up for the bytes
  still in flight that count as sent; shutting them at the deadline made the figure 11%
  high.)

``run_speedtest(..., as_shipped=True)`` leaves both out, for comparison.
"""
from __future__ import annotations

import logging
import math
import socket
import threading
import time
from typing import Any, Callable
from urllib.request import AbstractHTTPHandler

import speedtest

from agent.shared.reading import Throughput

log = logging.getLogger(__name__)

# speedtest.net's configuration (speedtest-config.php) as it has stood for years:
# <server-config threadcount="4"/>, <download testlength="10" threadsperurl="4"/>,
# <upload testlength="10" ratio="5" threads="2" maxchunkcount="50"/>.
SPEEDTEST_NET_SETTINGS = {"threadcount": 4, "download_threadsperurl": 4, "download_testlength": 10,
                          "upload_ratio": 5, "upload_threads": 2, "upload_maxchunkcount": 50,
                          "upload_testlength": 10}
UNSENT_LIMIT = 16 * 1024
END_GRACE_S = 0.1  # after the library's own deadline, so that its clock check comes first
TCP_NOTSENT_LOWAT = getattr(socket, "TCP_NOTSENT_LOWAT", 25)  # Linux's value; Python 3.11 lacks the name


def mini_config(seconds: float = 10.0) -> dict[str, Any]:
    """The configuration ``Speedtest.get_config`` would derive from speedtest.net's answer,
    with each direction's test length set to ``seconds``."""
    s = SPEEDTEST_NET_SETTINGS
    # The same arithmetic as speedtest.Speedtest.get_config (speedtest-cli 2.1.3).
    up_sizes = [32768, 65536, 131072, 262144, 524288, 1048576, 7340032][s["upload_ratio"] - 1:]
    upload_count = int(math.ceil(s["upload_maxchunkcount"] / len(up_sizes)))
    return {
        "client": {"ip": "", "lat": "0", "lon": "0", "isp": "", "isprating": "", "rating": "0",
                   "ispdlavg": "0", "ispulavg": "0", "loggedin": "0", "country": ""},
        "ignore_servers": [],
        "sizes": {"upload": up_sizes, "download": [350, 500, 750, 1000, 1500, 2000, 2500, 3000, 3500, 4000]},
        "counts": {"upload": upload_count, "download": s["download_threadsperurl"]},
        "threads": {"upload": s["upload_threads"], "download": s["threadcount"] * 2},
        "length": {"upload": seconds, "download": seconds},
        "upload_max": upload_count * len(up_sizes),
    }


class ConnectionControl(AbstractHTTPHandler):
    """A ``urllib`` handler that opens the library's connections, with a short send queue,
    and can shut every connection of the current test direction at its end.

    It is added to a ``Speedtest``'s opener with a lower ``handler_order`` than the
    library's own handlers, so ``urllib`` asks it first; it builds the library's connection
    classes with the same source address and timeout.
    """

    handler_order = 400  # urllib's handlers default to 500

    def __init__(self, source_address: tuple[str, int] | None, timeout: float) -> None:
        super().__init__()
        self.source_address = source_address
        self.timeout = timeout
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._timer: threading.Timer | None = None
        self._ended = False

    def attach(self, test: speedtest.Speedtest) -> "ConnectionControl":
        test._opener.add_handler(self)
        return self

    def _connection(self, cls: type) -> Callable[..., Any]:
        control = self

        class Connection(cls):  # type: ignore[misc, valid-type]
            def connect(self) -> None:
                super().connect()
                control._opened(self.sock)

        def build(host: str, **kwargs: Any) -> Any:
            kwargs.update(source_address=self.source_address, timeout=self.timeout)
            return Connection(host, **kwargs)

        return build

    def http_open(self, req: Any) -> Any:
        return self.do_open(self._connection(speedtest.SpeedtestHTTPConnection), req)

    def https_open(self, req: Any) -> Any:
        return self.do_open(self._connection(speedtest.SpeedtestHTTPSConnection), req)

    def _opened(self, sock: socket.socket) -> None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, TCP_NOTSENT_LOWAT, UNSENT_LIMIT)
        except OSError as exc:  # not Linux, or a kernel before 3.12: the figure is less exact
            log.debug("TCP_NOTSENT_LOWAT: %s", exc)
        with self._lock:
            self._sockets.append(sock)
            ended = self._ended
        if ended:
            self._shut(sock)

    def end_after(self, seconds: float) -> None:
        """Shut every connection opened from now on, ``seconds`` from now."""
        self.cancel()
        self._timer = threading.Timer(seconds, self._end)
        self._timer.daemon = True
        self._timer.start()

    def cancel(self) -> None:
        """Leave connections opened from now on alone."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        with self._lock:
            self._sockets, self._ended = [], False

    def _end(self) -> None:
        with self._lock:
            self._ended = True
            sockets = list(self._sockets)
        for sock in sockets:
            self._shut(sock)

    @staticmethod
    def _shut(sock: socket.socket) -> None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already closed


class PrivateSpeedtest(speedtest.Speedtest):
    """``speedtest.Speedtest`` against a private Speedtest Mini server, without speedtest.net.

    ``Speedtest.__init__`` always calls ``self.get_config()``, which downloads
    ``www.speedtest.net/speedtest-config.php`` and raises ``ConfigRetrievalError`` when it
    cannot; the ``config`` argument of ``__init__`` is only merged into the result
    afterwards, so it cannot avoid the download.  ``speedtest-cli --mini`` itself fetches
    the configuration first too: it needs speedtest.net even for a private server.

    ``get_config`` is a public method that ``__init__`` reaches through ``self``, and the
    only place the library asks speedtest.net for its configuration.  This subclass
    overrides it to supply the configuration speedtest.net would give (:func:`mini_config`)
    instead of patching the module.  Everything else is the library's own code:
    ``set_mini_server`` reads the server's index, ``get_best_server`` its ``latency.txt``,
    and ``download``/``upload`` measure and count as they always do.
    """

    def __init__(self, seconds: float = 10.0, timeout: float = 10.0) -> None:
        self._seconds = seconds
        super().__init__(timeout=timeout)

    def get_config(self) -> dict[str, Any]:
        self.config.update(mini_config(self._seconds))
        self.lat_lon = (0.0, 0.0)
        return self.config


def run_speedtest(server: str | None = None, seconds: float = 10.0, timeout: float = 10.0,
                  as_shipped: bool = False) -> Throughput:
    """One speedtest-cli download and upload; failures come back as ``error``, never raised.

    ``server``: a Speedtest Mini URL, or None for Ookla's servers (speedtest.net).
    ``seconds``: each direction's length; only a private server can be given another one.
    ``as_shipped``: run the library without the corrections described in the module's
    docstring.
    """
    started = time.monotonic()
    where = server
    test: speedtest.Speedtest | None = None
    control: ConnectionControl | None = None
    try:
        if server:
            test = PrivateSpeedtest(seconds=seconds, timeout=timeout)
        else:
            test = speedtest.Speedtest(timeout=timeout, secure=True)
        if not as_shipped:
            control = ConnectionControl(None, timeout).attach(test)
        if server:
            best = test.get_best_server(test.set_mini_server(server))  # as speedtest-cli --mini does
        else:
            best = test.get_best_server()
            where = f"{best.get('sponsor', '?')} ({best.get('name', '?')}) {best.get('host', '')}".strip()
        if control:
            control.end_after(test.config["length"]["download"] + END_GRACE_S)
        down = test.download()
        if control:
            control.cancel()
        up = test.upload(pre_allocate=False)  # pre-allocating holds every body (~125 MB) in memory
    except (speedtest.SpeedtestException, OSError, ValueError) as exc:
        reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if isinstance(exc, speedtest.ConfigRetrievalError):
            reason = f"cannot fetch the configuration from speedtest.net ({exc})"
        return Throughput(
            backend="speedtest", server=where, bytes_used=_bytes(test.results if test else None),
            duration_s=round(time.monotonic() - started, 3), error=reason[:200],
        )
    finally:
        if control:
            control.cancel()
    error = None
    if not test.results.bytes_received:
        error = "the download moved no data"
    elif not test.results.bytes_sent:
        error = "the upload moved no data"
    return Throughput(
        backend="speedtest",
        server=where,
        down_mbps=round(down / 1e6, 3) if test.results.bytes_received else None,
        up_mbps=round(up / 1e6, 3) if test.results.bytes_sent else None,
        bytes_used=_bytes(test.results),
        duration_s=round(time.monotonic() - started, 3),
        error=error,
    )


def _bytes(results: Any) -> int | None:
    if results is None:
        return None
    return int(results.bytes_received or 0) + int(results.bytes_sent or 0)
