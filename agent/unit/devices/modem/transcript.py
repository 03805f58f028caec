"""Modem transcripts: what a model answers to each command, recorded from a real unit.

A transcript file (``firmware_configs/<model>.transcript``) holds blocks::

    # comment lines start with '# '
    > AT+CGMM
    EC25
    OK

A line starting with ``> `` is a command as sent; the lines after it, up to the next command,
are the answer exactly as the modem printed it (final result included).  Blank lines inside
an answer are kept, leading and trailing blank lines of a block are not.  Command lookup is
case-insensitive on the command, as modems are.

A comment is ``#`` followed by a blank or nothing: Telit answers start with ``#`` too
(``#RFSTS: ...``, ``#CCID: ...``) and are answer lines.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from agent.unit.devices.modem.errors import ProfileError


@dataclass(frozen=True)
class Transcript:
    answers: dict[str, tuple[str, ...]]

    def answer(self, command: str) -> tuple[str, ...] | None:
        return self.answers.get(command.strip().upper())


def parse_transcript(text: str, source: str = "<transcript>") -> Transcript:
    answers: dict[str, list[str]] = {}
    current: list[str] | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip("\r")
        if _is_comment(line):
            continue
        if line.startswith("> "):
            command = line[2:].strip().upper()
            if not command:
                raise ProfileError(f"{source}:{number}: '> ' must be followed by a command")
            if command in answers:
                raise ProfileError(f"{source}:{number}: {command} is answered twice")
            current = answers[command] = []
            continue
        if current is None:
            if line.strip():
                raise ProfileError(f"{source}:{number}: expected '> COMMAND' before any answer line, got {line!r}")
            continue
        current.append(line)
    return Transcript({cmd: tuple(_trim(lines)) for cmd, lines in answers.items()})


def _is_comment(line: str) -> bool:
    return line == "#" or line.startswith(("# ", "#\t"))


def _trim(lines: list[str]) -> list[str]:
    start, end = 0, len(lines)
    while start < end and not lines[start].strip():
        start += 1
    while end > start and not lines[end - 1].strip():
        end -= 1
    return lines[start:end]


def load_transcript(path: Path | str) -> Transcript:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ProfileError(f"{path}: cannot read: {exc}") from None
    return parse_transcript(text, str(path))
