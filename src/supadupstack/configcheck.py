"""How a config field declares and checks its values (used by ``config``).

``option(default, doc, ...)`` puts the rules in the dataclass field's metadata: choices, a
numeric range, null allowed, a text pattern (names, paths, addresses) and, for lists, the
pattern of each item. ``coerce`` applies them to one value and raises a one-line
``ConfigError`` that names the key and the allowed values. Every value is bounded: floats must
be finite, numbers without an upper bound stop at ``NUMBER_MAX``, text at ``TEXT_MAX``
characters, lists at ``LIST_MAX`` items; hostile values never reach the pipeline.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import field
from typing import Any

from supadupstack.errors import ConfigError

NUMBER_MAX = 1_000_000
TEXT_MAX = 4096
LIST_MAX = 64
SHOWN_MAX = 60  # characters of a bad value quoted in an error message

# a file base name: no folder part, not hidden, no control characters
NAME = re.compile(r"[^\x00-\x1f\x7f/\\.\-][^\x00-\x1f\x7f/\\]{0,99}")
PATH = re.compile(r"[^\x00-\x1f\x7f]{1,4096}")
LABEL = re.compile(r"[^\x00-\x1f\x7f]{1,200}")
SUFFIX = re.compile(r"\.[A-Za-z0-9_.\-]{1,15}")
ADDRESS = re.compile(r"((tcp|tls|ucx|ws|wss|inproc)://)?[A-Za-z0-9_.\-\[\]:]{1,253}:\d{1,5}/?")


def option(
    default: Any,
    doc: str,
    *,
    choices: tuple | None = None,
    lo=None,
    hi=None,
    nullable: bool = False,
    pattern: re.Pattern | None = None,
    items: re.Pattern | None = None,
    what: str = "",
):
    """A dataclass field with its documentation and the rules its values must follow."""
    meta = {
        "doc": doc,
        "choices": choices,
        "lo": lo,
        "hi": hi,
        "nullable": nullable,
        "pattern": pattern,
        "items": items,
        "what": what,
    }
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


def kind(f: dataclasses.Field) -> str:
    t = str(f.type)
    for name in ("bool", "int", "float", "str", "list"):
        if t.startswith(name):
            return name
    return t


def allowed(f: dataclasses.Field) -> str:
    """The allowed values of a field, in words (for errors and ``supadupstack config``)."""
    m = f.metadata
    if m.get("choices"):
        return "one of " + ", ".join(repr(c) for c in m["choices"])
    text = kind(f)
    lo, hi = m.get("lo"), m.get("hi")
    if text in ("int", "float"):
        hi = NUMBER_MAX if hi is None else hi
        text += f" in [{lo}, {hi}]" if lo is not None else f" <= {hi}"
    if m.get("what"):
        text += f" ({m['what']})"
    return text + (" or null" if m.get("nullable") else "")


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= SHOWN_MAX else text[: SHOWN_MAX - 3] + "..."


def _typed(f: dataclasses.Field, value: Any) -> Any:
    """The value converted to the field's kind, or None when it has another type."""
    k = kind(f)
    if k == "bool":
        return value if isinstance(value, bool) else None
    if isinstance(value, bool):
        return None
    if k == "int":
        return value if isinstance(value, int) else None
    if k == "float":
        if not isinstance(value, int | float):
            return None
        try:
            number = float(value)
        except OverflowError:
            return None
        return number if math.isfinite(number) else None
    if k == "str":
        return value if isinstance(value, str) and len(value) <= TEXT_MAX else None
    if k == "list":
        return value if isinstance(value, list) and len(value) <= LIST_MAX else None
    return value


def _in_rules(f: dataclasses.Field, value: Any) -> bool:
    m = f.metadata
    if m.get("choices"):
        return value in m["choices"]
    if kind(f) in ("int", "float"):
        hi = NUMBER_MAX if m.get("hi") is None else m["hi"]
        return (m.get("lo") is None or value >= m["lo"]) and value <= hi
    if m.get("pattern") is not None and not m["pattern"].fullmatch(value):
        return False
    if m.get("items") is not None:
        return all(isinstance(v, str) and m["items"].fullmatch(v) for v in value)
    return True


def coerce(key: str, f: dataclasses.Field, value: Any) -> Any:
    """Check one value against the field's kind and rules; return it (floats as float)."""
    m = f.metadata
    as_null = isinstance(value, str) and value.lower() in ("none", "null") and m.get("nullable")
    if value is None or as_null:
        if m.get("nullable"):
            return None
        raise ConfigError(f"config key '{key}': null is not allowed; allowed: {allowed(f)}")
    typed = _typed(f, value)
    if typed is None or not _in_rules(f, typed):
        raise ConfigError(f"config key '{key}': {_shown(value)} is invalid; allowed: {allowed(f)}")
    return typed
