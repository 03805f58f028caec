"""Agent config files for tests: a fast-moving agent pointed at a test broker."""
from __future__ import annotations

from pathlib import Path


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_config(path: Path, port: int, buffer: Path, overrides: dict[str, dict[str, object]] | None = None,
                 device: str = "unit-1") -> Path:
    """An agent config for tests: fast backoff, fast readings, the given broker port.

    ``overrides`` maps section -> key -> value and replaces or adds keys.
    """
    sections: dict[str, dict[str, object]] = {
        "device": {"id": device},
        "buffer": {"path": str(buffer)},
        "uplink": {"host": "127.0.0.1", "port": port, "backoff_min": "50ms", "backoff_max": "500ms",
                   "keepalive": "5s", "connect_timeout": "3s"},
        "source": {"kind": "synthetic", "interval": "20ms"},
        "budget": {"ledger": str(buffer.with_name("usage.db"))},
    }
    for name, values in (overrides or {}).items():
        sections.setdefault(name, {}).update(values)
    lines = []
    for name, values in sections.items():
        lines.append(f"[{name}]")
        lines.extend(f"{key} = {toml_value(value)}" for key, value in values.items())
        lines.append("")
    path.write_text("\n".join(lines))
    return path
