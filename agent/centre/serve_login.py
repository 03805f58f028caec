"""Who may open the served map: a file of users with salted scrypt password hashes, and HTTP Basic.

One user a line, ``name:scrypt:N:r:p:SALT:HASH`` (salt and hash in hex); ``#`` starts a
comment.  ``blankspot serve --login FILE --add-user NAME`` writes a line (the password is
asked on the terminal, or read from the first line of standard input), keeping the others.
The file holds no password, but keep it readable by the server's user only all the same.

A password is checked with scrypt once; the answer is remembered under an HMAC of the
name and password with a key made at start, so a browser sending its login with every
request costs one hash, not one per request.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import secrets
import threading
from pathlib import Path

SCRYPT_N = 2 ** 14
SCRYPT_R = 8
SCRYPT_P = 1
SALT_BYTES = 16
HASH_BYTES = 32
USER_NAME = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")


class LoginFileError(ValueError):
    """A users file that cannot be used; the message names the file and line."""


def hash_password(password: str, salt: bytes | None = None) -> str:
    """The stored form of ``password`` (without the user's name)."""
    salt = salt if salt is not None else secrets.token_bytes(SALT_BYTES)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P,
                            dklen=HASH_BYTES, maxmem=64 * 1024 * 1024)
    return f"scrypt:{SCRYPT_N}:{SCRYPT_R}:{SCRYPT_P}:{salt.hex()}:{digest.hex()}"


def password_matches(stored: str, password: str) -> bool:
    try:
        kind, n, r, p, salt, digest = stored.split(":")
        if kind != "scrypt":
            return False
        expected = bytes.fromhex(digest)
        got = hashlib.scrypt(password.encode("utf-8"), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p),
                             dklen=len(expected), maxmem=256 * 1024 * 1024)
    except (ValueError, MemoryError):
        return False
    return hmac.compare_digest(got, expected)


def parse_users(text: str, source: str = "<users>") -> dict[str, str]:
    users: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, stored = line.partition(":")
        parts = stored.split(":")
        if not sep or not USER_NAME.match(name) or len(parts) != 6 or parts[0] != "scrypt" \
                or not all(x.isdigit() for x in parts[1:4]):
            raise LoginFileError(f"{source} line {number}: expected name:scrypt:N:r:p:SALT:HASH "
                                 "(made by blankspot serve --add-user)")
        try:
            bytes.fromhex(parts[4]), bytes.fromhex(parts[5])
        except ValueError:
            raise LoginFileError(f"{source} line {number}: the salt and hash must be hex") from None
        users[name] = stored
    return users


def read_users(path: Path) -> dict[str, str]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise LoginFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise LoginFileError(f"{path} is not UTF-8 text") from None
    return parse_users(text, str(path))


def set_user(path: Path, name: str, password: str) -> bool:
    """Add ``name`` with ``password`` to the users file (made with mode 0600), or change its
    password; the other lines stay as they were.  Returns True when the user is new."""
    if not USER_NAME.match(name):
        raise LoginFileError(f"user name {name!r}: use 1-64 letters, digits, '.', '_', '@' or '-'")
    if not password:
        raise LoginFileError("the password is empty")
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    parse_users("\n".join(lines), str(path))  # refuse to rewrite a file that is already wrong
    entry = f"{name}:{hash_password(password)}"
    new = True
    for i, line in enumerate(lines):
        if line.strip().partition(":")[0] == name and not line.strip().startswith("#"):
            lines[i] = entry
            new = False
    if new:
        lines.append(entry)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write("\n".join(lines) + "\n")
    os.replace(tmp, path)
    return new


class Login:
    """Checks ``Authorization: Basic`` headers against a users table."""

    def __init__(self, users: dict[str, str]) -> None:
        self.users = dict(users)
        self._key = secrets.token_bytes(32)
        self._good: set[bytes] = set()
        self._lock = threading.Lock()

    def user(self, header: str | None) -> str | None:
        """The user a header logs in as, or None."""
        if not header or not header.startswith("Basic "):
            return None
        try:
            name, sep, password = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        stored = self.users.get(name)
        if not sep or stored is None:
            return None
        token = hmac.new(self._key, f"{name}:{password}".encode("utf-8"), hashlib.sha256).digest()
        with self._lock:
            if token in self._good:
                return name
        if not password_matches(stored, password):
            return None
        with self._lock:
            if len(self._good) > 10_000:
                self._good.clear()
            self._good.add(token)
        return name
