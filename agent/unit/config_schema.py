"""Strict validation of TOML tables into dataclasses.

Each config field is declared with :func:`setting`, which carries its type, bounds and the
one-line description that ``docs/configuration.md`` must repeat.  :func:`build` turns a
parsed TOML table into the dataclass, rejecting unknown keys (with a "did you mean"
suggestion), wrong types and impossible values through :class:`SettingError`.
:func:`line_of` and :func:`toml_error` find the line a mistake is on, for the message.
"""
from __future__ import annotations

import dataclasses
import difflib
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from agent.shared.quantities import format_duration, format_size, parse_duration, parse_size

KINDS = ("str", "int", "float", "bool", "duration", "size", "path", "choice", "strings", "section", "tables")


class SettingError(ValueError):
    """A config value is wrong; ``key`` is the dotted key, ``message`` what was expected."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


@dataclass(frozen=True)
class Spec:
    kind: str
    doc: str
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    optional: bool = False
    item: type | None = None  # "tables": the dataclass each table is built into


def setting(
    default: Any,
    doc: str,
    kind: str,
    *,
    choices: Sequence[str] = (),
    minimum: float | None = None,
    maximum: float | None = None,
    optional: bool = False,
) -> Any:
    """A config field: its default, a one-line description and its type."""
    assert kind in KINDS, kind
    spec = Spec(kind, doc, tuple(choices), minimum, maximum, optional)
    return field(default=default, metadata={"spec": spec})


def section(cls: type, doc: str) -> Any:
    """A nested table of settings."""
    return field(default_factory=cls, metadata={"spec": Spec("section", doc)})


def tables(cls: type, doc: str) -> Any:
    """A list of tables (TOML ``[[name]]``), each validated into ``cls``; built as a tuple."""
    return field(default=(), metadata={"spec": Spec("tables", doc, item=cls)})


def _spec(f: dataclasses.Field) -> Spec:
    return f.metadata["spec"]


def _describe(spec: Spec) -> str:
    return {
        "str": "a string",
        "int": "a whole number",
        "float": "a number",
        "bool": "true or false",
        "duration": 'a duration such as "30s"',
        "size": 'a size such as "50MB"',
        "path": "a file path",
        "choice": "one of " + ", ".join(repr(c) for c in spec.choices),
        "strings": 'a list of strings such as ["a", "b"]',
        "section": "a table",
        "tables": "a list of tables ([[...]] blocks)",
    }[spec.kind]


def _convert(key: str, spec: Spec, value: Any) -> Any:
    if value is None or (spec.optional and value == ""):
        if spec.optional:
            return None
        raise SettingError(key, f"expected {_describe(spec)}")
    kind = spec.kind
    try:
        if kind == "str" or kind == "path":
            if not isinstance(value, str):
                raise TypeError
            result: Any = value if kind == "str" else Path(value)
        elif kind == "bool":
            if not isinstance(value, bool):
                raise TypeError
            result = value
        elif kind == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError
            result = value
        elif kind == "float":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError
            result = float(value)
        elif kind == "duration":
            if isinstance(value, bool) or not isinstance(value, str):
                raise TypeError
            result = parse_duration(value)
        elif kind == "size":
            if isinstance(value, bool) or not isinstance(value, str):
                raise TypeError
            result = parse_size(value)
        elif kind == "choice":
            if not isinstance(value, str):
                raise TypeError
            if value not in spec.choices:
                close = difflib.get_close_matches(value, spec.choices, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise SettingError(key, f"expected {_describe(spec)}, got {value!r}{hint}")
            result = value
        elif kind == "strings":
            if not isinstance(value, list):
                raise TypeError
            for index, item in enumerate(value):
                if not isinstance(item, str):
                    raise SettingError(f"{key}[{index}]", f"expected a string, got {type(item).__name__} {item!r}")
            result = tuple(value)
        else:  # pragma: no cover - sections and tables are handled by build()
            raise AssertionError(kind)
    except TypeError:
        raise SettingError(
            key, f"expected {_describe(spec)}, got {type(value).__name__} {value!r}"
        ) from None
    except SettingError:
        raise
    except ValueError as exc:
        raise SettingError(key, str(exc)) from None
    if spec.minimum is not None and result < spec.minimum:
        raise SettingError(key, f"must be at least {_show(spec, spec.minimum)}, got {value!r}")
    if spec.maximum is not None and result > spec.maximum:
        raise SettingError(key, f"must be at most {_show(spec, spec.maximum)}, got {value!r}")
    return result


def _show(spec: Spec, number: float) -> str:
    if spec.kind == "duration":
        return f'"{format_duration(number)}"'
    if spec.kind == "size":
        return f'"{format_size(int(number))}"'
    return str(number)


def build(cls: type, table: Any, prefix: str = "") -> Any:
    """Validate ``table`` (a parsed TOML table) into an instance of dataclass ``cls``."""
    if not isinstance(table, dict):
        raise SettingError(prefix.rstrip(".") or "(top level)", "expected a table")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in table:
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            known = ", ".join(fields)
            raise SettingError(f"{prefix}{key}", f"unknown key{hint}; known keys here: {known}")
    values = {}
    for name, f in fields.items():
        if name not in table:
            continue
        spec = _spec(f)
        if spec.kind == "section":
            values[name] = build(f.default_factory, table[name], f"{prefix}{name}.")  # type: ignore[misc]
        elif spec.kind == "tables":
            items = table[name]
            if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
                raise SettingError(f"{prefix}{name}", f"expected {_describe(spec)}, got {type(items).__name__}")
            values[name] = tuple(
                build(spec.item, item, f"{prefix}{name}[{index}].") for index, item in enumerate(items)  # type: ignore[arg-type]
            )
        else:
            values[name] = _convert(f"{prefix}{name}", spec, table[name])
    return cls(**values)


def walk(cls: type, prefix: str = "") -> Iterator[tuple[str, Spec, Any]]:
    """Every setting of ``cls`` as (dotted key, spec, default), depth first."""
    for f in dataclasses.fields(cls):
        spec = _spec(f)
        if spec.kind == "section":
            yield f"{prefix}{f.name}", spec, None
            yield from walk(f.default_factory, f"{prefix}{f.name}.")  # type: ignore[arg-type]
        elif spec.kind == "tables":
            yield f"{prefix}{f.name}", spec, f.default
            yield from walk(spec.item, f"{prefix}{f.name}.")  # type: ignore[arg-type]
        else:
            yield f"{prefix}{f.name}", spec, f.default


# -- where in the file a mistake is ---------------------------------------------------------

_HEADER_RE = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_ASSIGN_RE = re.compile(r"^\s*([A-Za-z0-9_\"'.-]+?)\s*=")
_LAST_PART_RE = re.compile(r"^(.*?)(\.[^.\[\]]+|\[\d+\])$")
_POSITION_RE = re.compile(r"\s*\(at line (\d+), column (\d+)\)")


def toml_error(exc: tomllib.TOMLDecodeError) -> tuple[str, int | None]:
    """``exc``'s message ending ``at column M`` instead of ``(at line N, column M)``, and N.

    The line goes where the file is named (``agent.toml:3: ...``); None when tomllib gave none.
    """
    message = str(exc)
    m = _POSITION_RE.search(message)
    if m is None:
        return message, None
    return f"{message[: m.start()]} at column {m.group(2)}", int(m.group(1))


def line_of(text: str, dotted_key: str, *, enclosing: bool = False) -> int | None:
    """The line of ``dotted_key`` (``uplink.port``, ``usb[1].vid``) in TOML ``text``, or None.

    Best effort, line by line, looked for in this order: the key's own assignment; its
    table's assignment as an inline table (``uplink = {port = 1}``); a table header equal to
    the key.  With ``enclosing``, then the nearest enclosing key or header that is in the file
    (``[device]`` for a missing ``device.id``).  The n-th ``[[name]]`` table is ``name[n-1]``.
    """
    assignments, headers = _key_lines(text)
    table = dotted_key.rpartition(".")[0]
    for line in (assignments.get(dotted_key), assignments.get(table) if table else None, headers.get(dotted_key)):
        if line is not None:
            return line
    candidate = dotted_key
    while enclosing and (m := _LAST_PART_RE.match(candidate)):
        candidate = m.group(1)
        line = assignments.get(candidate, headers.get(candidate))
        if line is not None:
            return line
    return None


def _key_lines(text: str) -> tuple[dict[str, int], dict[str, int]]:
    """The first line of each assigned dotted key, and of each table header."""
    assignments: dict[str, int] = {}
    headers: dict[str, int] = {}
    table = ""
    counts: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        m = _HEADER_RE.match(line)
        if m:
            name = _dotted(m.group(2))
            if m.group(1) == "[[":
                index = counts.get(name, 0)
                counts[name] = index + 1
                table = f"{name}[{index}]"
            else:
                table = name
            headers.setdefault(table, number)
            continue
        m = _ASSIGN_RE.match(line)
        if m:
            name = _dotted(m.group(1))
            assignments.setdefault(f"{table}.{name}" if table else name, number)
    return assignments, headers


def _dotted(key: str) -> str:
    """``"a" . 'b'`` as ``a.b``."""
    return ".".join(part.strip().strip("\"'") for part in key.split("."))
