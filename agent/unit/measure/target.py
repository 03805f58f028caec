"""``HOST[:PORT]`` as given on the command line or in the config, and the speed server's URL.  Pure.

``broker.example.org``, ``10.0.0.1:1883``, ``[2001:db8::1]:8883`` and a bare ``2001:db8::1``
are targets; :func:`parse_target` raises :class:`TargetError` and nothing else.
:func:`server_url` makes ``http://HOST:PORT/`` of a throughput test's ``--target``.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

_NAME_RE = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,62}))*\.?", re.ASCII)
_PORT_RE = re.compile(r"[0-9]{1,5}", re.ASCII)

SPEED_SERVER_PORT = 8080  # blankspot speed-server's, and a throughput --target's without a port


class TargetError(ValueError):
    """Not a ``HOST[:PORT]`` target.  ``str()`` says what is wrong, in one line."""


@dataclass(frozen=True)
class Target:
    host: str
    port: int | None = None

    def with_port(self, default: int) -> "Target":
        return self if self.port is not None else Target(self.host, default)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port is None else f"{host}:{self.port}"


def _check_host(host: str, text: str) -> str:
    if ":" in host:
        try:
            ipaddress.IPv6Address(host.split("%", 1)[0])
        except ValueError:
            raise TargetError(f"not an IPv6 address: {host!r}") from None
        return host
    if len(host) > 253 or not _NAME_RE.fullmatch(host):
        raise TargetError(f"not a host name or address: {text!r}")
    return host


def _port(text: str, whole: str) -> int:
    if not _PORT_RE.fullmatch(text) or not 1 <= int(text) <= 65535:
        raise TargetError(f"port must be a number from 1 to 65535: {whole!r}")
    return int(text)


def parse_target(text: str) -> Target:
    if not isinstance(text, str):
        raise TargetError(f"expected text, got {type(text).__name__}")
    if not text:
        raise TargetError("empty target")
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise TargetError(f"missing ']' in {text!r}")
        host, rest = text[1:end], text[end + 1:]
        if ":" not in host:
            raise TargetError(f"brackets are for IPv6 addresses: {text!r}")
        if rest and not rest.startswith(":"):
            raise TargetError(f"unexpected text after ']' in {text!r}")
        return Target(_check_host(host, text), _port(rest[1:], text) if rest else None)
    if text.count(":") > 1:  # a bare IPv6 address cannot carry a port
        return Target(_check_host(text, text))
    host, sep, port = text.partition(":")
    return Target(_check_host(host, text), _port(port, text) if sep else None)


def server_url(target: str, default_port: int = SPEED_SERVER_PORT) -> str:
    """``http://HOST:PORT/`` for a target given as a URL or as ``HOST[:PORT]``."""
    if "://" in target:
        parts = urlsplit(target)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"expected an http:// URL or HOST[:PORT], got {target!r}")
        return target if parts.path else target + "/"
    parts = urlsplit(f"http://{target}")
    try:
        port = parts.port or default_port
    except ValueError:
        raise ValueError(f"bad port in {target!r}") from None
    if not parts.hostname or parts.path or parts.query:
        raise ValueError(f"expected an http:// URL or HOST[:PORT], got {target!r}")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"http://{host}:{port}/"
