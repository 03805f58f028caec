"""A centre's folder of units' heartbeat keys, as provisioning lays it out."""
from __future__ import annotations

from pathlib import Path

from agent.shared.heartbeat import new_key


def keys_folder(tmp_path: Path, devices: tuple[str, ...] = ("boat_7", "probe-2")) -> Path:
    """``<tmp_path>/heartbeat-keys/<device>.key``, a new key for each of ``devices``."""
    folder = tmp_path / "heartbeat-keys"
    folder.mkdir()
    for device in devices:
        (folder / f"{device}.key").write_text(new_key(), encoding="ascii")
    return folder
