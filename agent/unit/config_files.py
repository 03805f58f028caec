"""The files and folders a config names: are they there, and can the agent use them?

:func:`parse_config` checks what the file *says*; this module checks what it *points at*,
which can change after the file was written (a certificate not copied yet, a folder with
the wrong owner).  ``blankspot run --check`` reports every problem found here and exits 2;
``blankspot run`` logs them and carries on measuring, since readings are buffered until the
uplink can connect.

- :func:`check_tls_files` is for the uplink, before each connection attempt with TLS: it
  turns a missing or unusable CA file, certificate or key into one line to log, instead of
  an exception from deep inside ``ssl``.
- :func:`file_problems` is every problem, as :class:`ConfigError` lines
  (``FILE:LINE: KEY: what is wrong``) like the other config errors.
"""
from __future__ import annotations

import getpass
import logging
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from agent.unit.config import Config, ConfigError, UplinkConfig
from agent.unit.config_schema import line_of

log = logging.getLogger(__name__)

# systemd/blankspot-agent.service has StateDirectory=blankspot: systemd creates this folder,
# owned by the service's user, each time the service starts, so it need not exist before.
SERVICE_STATE_DIRECTORY = Path("/var/lib/blankspot")


@dataclass(frozen=True)
class FileProblem:
    key: str      # the dotted config key naming the file: "uplink.ca_file"
    message: str  # what is wrong, naming the file

    def __str__(self) -> str:
        return f"{self.key}: {self.message}"


def _who() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a uid without a passwd entry (containers)
        return f"uid {os.getuid()}"


def _unreadable(path: Path) -> str | None:
    """Why ``path`` cannot be read as a file by this process, or None."""
    try:
        with path.open("rb") as f:
            f.read(1)
    except FileNotFoundError:
        return f"{path}: no such file"
    except IsADirectoryError:
        return f"{path}: is a folder, expected a file"
    except PermissionError:
        return f"{path}: not readable by {_who()}"
    except OSError as exc:
        return f"{path}: cannot read: {exc.strerror or exc}"
    return None


def _ssl_reason(exc: Exception) -> str:
    return getattr(exc, "reason", None) or getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def _no_passphrase() -> bytes:
    # Without a callback OpenSSL would prompt on the terminal for an encrypted key's
    # passphrase; the agent runs unattended and cannot type one.
    return b""


def tls_problems(uplink: UplinkConfig) -> list[FileProblem]:
    """What is wrong with the CA file, client certificate and key ``uplink`` names."""
    problems = []
    for name in ("ca_file", "cert_file", "key_file"):
        path = getattr(uplink, name)
        why = None if path is None else _unreadable(path)
        if why:
            problems.append(FileProblem(f"uplink.{name}", why))
    if problems:
        return problems
    # Readable; now load them as the TLS connection will, so a file that is not PEM or a
    # key that does not belong to its certificate is found here rather than at connect.
    if uplink.ca_file is not None:
        try:
            ssl.create_default_context(cafile=str(uplink.ca_file))
        except (ssl.SSLError, ValueError, OSError) as exc:
            problems.append(FileProblem("uplink.ca_file", f"{uplink.ca_file}: not a PEM CA certificate "
                                                          f"({_ssl_reason(exc)})"))
    if uplink.cert_file is not None and uplink.key_file is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        try:
            context.load_cert_chain(str(uplink.cert_file), str(uplink.key_file), password=_no_passphrase)
        except (ssl.SSLError, ValueError, OSError) as exc:
            problems.append(FileProblem(
                "uplink.cert_file", f"{uplink.cert_file} with key {uplink.key_file}: not a usable PEM certificate "
                                    f"and unencrypted key that match ({_ssl_reason(exc)})"))
    return problems


def check_tls_files(uplink: UplinkConfig) -> list[str]:
    """One line per problem with the TLS files ``uplink`` names; ``[]`` when all are usable.

    The uplink calls this before each connection attempt with ``uplink.tls``: a problem is a
    failed attempt (logged once, retried with backoff), never a traceback.  The files are
    read each time, so a certificate copied in later is used without a restart.
    """
    return [str(problem) for problem in tls_problems(uplink)]


def password_problem(uplink: UplinkConfig) -> FileProblem | None:
    path = uplink.password_file
    if path is None:
        return None
    why = _unreadable(path)
    if why:
        return FileProblem("uplink.password_file", why)
    try:
        first = path.read_text(encoding="utf-8").splitlines()[:1]
    except (OSError, UnicodeDecodeError) as exc:
        return FileProblem("uplink.password_file", f"{path}: cannot read: {exc}")
    if not first or not first[0].strip():
        return FileProblem("uplink.password_file", f"{path}: its first line is empty; expected the broker password there")
    return None


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def writable_file_problem(key: str, path: Path) -> FileProblem | None:
    """Can this process create or write the SQLite file ``path``, and the files beside it?

    SQLite writes ``-wal`` and ``-journal`` files beside the database (and the buffer its
    ``.seq`` file), so the folder itself must be writable, not only the file.
    """
    path = path.absolute()
    folder = path.parent
    who = _who()
    if path.is_dir():
        return FileProblem(key, f"{path}: is a folder, expected a file")
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        return FileProblem(key, f"{path}: not writable by {who}")
    if folder.is_dir():
        if not os.access(folder, os.W_OK | os.X_OK):
            return FileProblem(key, f"folder {folder} is not writable by {who}")
        return None
    if folder.exists():
        return FileProblem(key, f"{folder} is not a folder")
    if folder == SERVICE_STATE_DIRECTORY:
        return None
    ancestor = _nearest_existing(folder)
    if not ancestor.is_dir():
        return FileProblem(key, f"cannot create folder {folder}: {ancestor} is not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        return FileProblem(key, f"folder {folder} does not exist, and {who} cannot create it in {ancestor}")
    return None


def problems(config: Config) -> list[FileProblem]:
    """Every problem with the files and folders ``config`` names, in the order of the file."""
    found: list[FileProblem | None] = [writable_file_problem("buffer.path", config.buffer.path)]
    found += tls_problems(config.uplink)
    found.append(password_problem(config.uplink))
    found.append(writable_file_problem("budget.ledger", config.budget.ledger))
    return [problem for problem in found if problem is not None]


def file_problems(config: Config, path: Path | str, text: str | None = None) -> list[ConfigError]:
    """:func:`problems` as config errors, ``FILE:LINE: KEY: ...``; ``text`` is the file's (read if None)."""
    if text is None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            text = ""
    return [ConfigError(path, str(problem), line_of(text, problem.key)) for problem in problems(config)]
