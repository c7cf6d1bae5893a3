"""The checks a config value passes at its key path, and the spec of a section built from its dataclass.

Each check takes ``(path, value)`` and returns the value normalised, or raises :class:`ConfigError` naming
the path.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import MISSING, fields
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from riskcore.errors import ConfigError
from riskcore.states import KillSwitchMode

REQUIRED = object()  # a spec's default for a key that must be given
Check = Callable[[str, Any], Any]  # checks a value at a key path, returns it normalised or raises ConfigError


def number(path: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(path, f"must be a number, got {type(value).__name__} {value!r}")
    result = float(value)
    if not math.isfinite(result):
        raise ConfigError(path, f"must be finite, got {value!r}")
    return result


def positive(path: str, value: Any) -> float:
    result = number(path, value)
    if result <= 0:
        raise ConfigError(path, f"must be > 0, got {value!r}")
    return result


def fraction(path: str, value: Any) -> float:
    result = number(path, value)
    if not 0 < result <= 1:
        raise ConfigError(path, f"must be in (0, 1], got {value!r}")
    return result


def non_negative(path: str, value: Any) -> float:
    result = number(path, value)
    if result < 0:
        raise ConfigError(path, f"must be >= 0, got {value!r}")
    return result


def optional(check: Check) -> Check:
    def optional_check(path: str, value: Any) -> Any:
        return None if value is None else check(path, value)

    return optional_check


def positive_int(path: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(path, f"must be an integer, got {type(value).__name__} {value!r}")
    if value < 1:
        raise ConfigError(path, f"must be >= 1, got {value!r}")
    return value


def boolean(path: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(path, f"must be true or false, got {value!r}")
    return value


def mode(path: str, value: Any) -> KillSwitchMode:
    try:
        return KillSwitchMode(value)
    except ValueError:
        raise ConfigError(path, f"must be one of auto, manual; got {value!r}") from None


def text(path: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(path, f"must be a non-empty string, got {value!r}")
    return value


def roll_time(path: str, value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", value):
        raise ConfigError(path, f"must be HH:MM (24 h), got {value!r}")
    return value


def timezone(path: str, value: Any) -> str:
    name = text(path, value)
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(path, f"unknown time zone {value!r}") from None
    return name


def mapping(path: str, value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(path, f"must be a mapping, got {type(value).__name__}")
    for key in value:
        if not isinstance(key, str):
            raise ConfigError(path, f"keys must be strings, got {key!r}")
    return value


def as_given(path: str, value: Any) -> Any:
    """A sub-section, checked by its own spec afterwards."""
    return value


def or_empty(value: Any, empty: Any) -> Any:
    """An absent (``null``) section is empty; any other value, falsy or not, is checked as given."""
    return empty if value is None else value


def join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def checked(
    path: str,
    raw: Any,
    spec: Mapping[str, tuple[Check, Any]],
    base: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Check ``raw`` against ``spec`` (key -> (check, default)); refuse unknown keys."""
    raw = mapping(path, {} if raw is None else raw)
    unknown = sorted(set(raw) - set(spec))
    if unknown:
        raise ConfigError(join(path, unknown[0]), f"unknown key (allowed: {', '.join(sorted(spec))})")
    out: dict[str, Any] = {}
    for key, (check, default) in spec.items():
        if key in raw:
            out[key] = check(join(path, key), raw[key])
        elif base is not None and key in base:
            out[key] = base[key]
        elif default is REQUIRED:
            raise ConfigError(join(path, key), "is required")
        else:
            out[key] = default
    return out


def spec(
    cls: type, checks: Mapping[str, Check], supplied: tuple[str, ...] = ()
) -> dict[str, tuple[Check, Any]]:
    """A section's spec: each field's check, and its default as the dataclass ``cls`` declares it (the one
    place a default is written; a field without one is required). ``supplied``: fields the parser fills in."""
    declared = {f.name: f for f in fields(cls)}
    if set(checks) | set(supplied) != set(declared):
        raise TypeError(f"{cls.__name__}: checks for {sorted(checks)}, fields {sorted(declared)}")
    return {name: (check, REQUIRED if declared[name].default is MISSING else declared[name].default)
            for name, check in checks.items()}
