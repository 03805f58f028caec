"""``blankspot serve``'s server run in a thread of the test, on a free loopback port, and a
small HTTP client for it (urllib, with or without a login)."""
from __future__ import annotations

import base64
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from agent.centre.serve import LiveMap, MapServer, ServeOptions, make_server
from agent.centre.serve_login import Login
from agent.centre.store.readonly import open_store_readonly
from agent.shared.reading import Reading
from tests.support.survey_factory import T0, in_service, no_service

DAY_TWO = T0 + timedelta(days=3)   # 2026-11-27 in WITA


def indosat_unit() -> list[Reading]:
    """A second unit with an Indosat SIM, three days after the boat of ``trip_with_tags``: in
    service by Samarinda, without service near Tenggarong (it stands still: no track)."""
    readings = [in_service("probe-2", seq, -0.5030, 117.1460, mcc="510", mnc="01", operator="INDOSAT", rsrp=-85.0,
                           when=DAY_TWO) for seq in range(1, 8)]
    readings += [no_service("probe-2", seq, -0.4240, 116.9840, when=DAY_TWO) for seq in range(8, 16)]
    return readings


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")


@dataclass
class Served:
    server: MapServer
    live: LiveMap

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/"

    def get(self, path: str, login: tuple[str, str] | None = None, method: str = "GET") -> Reply:
        request = urllib.request.Request(self.url + path.lstrip("/"), method=method)
        if login is not None:
            token = base64.b64encode(f"{login[0]}:{login[1]}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return Reply(response.status, dict(response.headers), response.read())
        except urllib.error.HTTPError as exc:
            return Reply(exc.code, dict(exc.headers), exc.read())


@contextmanager
def served(db_url: str, options: ServeOptions = ServeOptions(refresh_s=0, background=False, tiles=None),
           login: Login | None = None, live: LiveMap | None = None) -> Iterator[Served]:
    """The map of ``db_url`` served on 127.0.0.1 at a free port until the block ends."""
    live = live or LiveMap(lambda: open_store_readonly(db_url), options)
    server = make_server("127.0.0.1", 0, live, login)
    thread = threading.Thread(target=server.serve_forever, name="served-map", daemon=True)
    thread.start()
    try:
        yield Served(server, live)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
        live.close()
