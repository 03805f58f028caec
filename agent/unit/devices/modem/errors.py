"""The modem package's exceptions (the tree is drawn in ``agent.unit.devices.modem``)."""
from __future__ import annotations


class ModemError(Exception):
    """Something about the modem went wrong; ``str()`` is fit to show a technician."""


class AtParseError(ModemError, ValueError):
    """The text of a response is not what the parser expects. Pure parsers raise only this."""


class AtTimeout(ModemError):
    """No final result arrived within the command's timeout."""


class AtCommandError(ModemError):
    """The modem answered with an error final result.

    ``kind`` is ``ERROR``, ``+CME ERROR``, ``+CMS ERROR`` or a model-specific final result;
    ``code`` the numeric code when one was given; ``text`` the error text (numeric codes are
    translated where 3GPP TS 27.007 defines them).
    """

    def __init__(self, command: str, kind: str, code: int | None = None, text: str | None = None) -> None:
        detail = f"{kind}" + (f": {code}" if code is not None else "") + (f" ({text})" if text else "")
        super().__init__(f"{command}: {detail}")
        self.command = command
        self.kind = kind
        self.code = code
        self.text = text


class PortGone(ModemError):
    """The serial port vanished (USB re-enumeration, unplugged) or cannot be opened."""


class ProfileError(ModemError):
    """A model profile in firmware_configs/ is wrong; the message names file and key."""
