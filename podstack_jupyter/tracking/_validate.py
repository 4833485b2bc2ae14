"""The limits of what the tracking plane stores, the same on every store (SQLite and PostgreSQL).

Every value that reaches a store passes one of these checks first, so a bad value is a
clear ``InvalidArgumentError`` naming the argument, before anything is written, instead of
a database error half-way through (PostgreSQL refuses NUL characters and keys over 255
characters, neither database can encode a lone surrogate, integers past 64 bits overflow).

==================================  ===================================================
names                               text of 1 to 255 characters, not all blank
                                    (experiments, runs, models, aliases, datasets)
keys                                text of 1 to 255 characters (params, tags, metrics)
param and tag values                text, at most 65,535 characters (other values are
                                    turned into text with ``str``)
descriptions, code kept with a run  text, at most 16 MiB
ids                                 text, at most 64 characters
metric steps                        integers from -2**63 to 2**63 - 1
numbers                             what a float holds (``10**400`` does not)
==================================  ===================================================

All text: no NUL character, and valid Unicode (no lone surrogate such as ``'\\ud800'``).
"""

from __future__ import annotations

import math

from ..errors import InvalidArgumentError

__all__ = ["MAX_NAME", "MAX_VALUE", "MAX_TEXT", "MAX_ID", "MIN_STEP", "MAX_STEP", "text", "name", "key", "value_text",
           "identifier", "number", "step", "string_dict", "optional_text"]

MAX_NAME = 255
MAX_VALUE = 65_535
MAX_TEXT = 16 * 1024 * 1024
MAX_ID = 64
MIN_STEP, MAX_STEP = -(2 ** 63), 2 ** 63 - 1


def _shown(value: str) -> str:
    return repr(value if len(value) <= 40 else value[:40] + "...")


def text(what: str, value, limit: int = MAX_VALUE, *, empty: bool = True) -> str:
    """``value`` if it is text the stores can hold, else ``InvalidArgumentError`` naming ``what``."""
    if type(value) is not str:
        if not isinstance(value, str):
            raise InvalidArgumentError(f"{what} must be text, got {type(value).__name__} {_repr(value)}")
        value = str.__str__(value)  # a str subclass (an Enum member...): its plain text
    if not empty and not value.strip():
        raise InvalidArgumentError(f"{what} must be non-empty text, got {value!r}")
    if len(value) > limit:
        raise InvalidArgumentError(f"{what} is longer than {limit:,} characters ({len(value):,}): {_shown(value)}")
    if "\x00" in value:
        raise InvalidArgumentError(f"{what} contains a NUL character (\\x00), which no store keeps: {_shown(value)}")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidArgumentError(
                f"{what} contains {value[exc.start]!r} at position {exc.start}, a lone surrogate that is not valid "
                f"Unicode and cannot be stored: {_shown(value)}") from None
    return value


def _repr(value) -> str:
    try:
        shown = repr(value)
    except Exception:  # noqa: BLE001 - an object whose repr fails is still named by its type
        return f"<{type(value).__name__}>"
    return shown if len(shown) <= 60 else shown[:60] + "..."


def name(what: str, value) -> str:
    """The name of a thing (experiment, run, model...): text of at most 255 characters, not all blank."""
    return text(what, value, MAX_NAME, empty=False)


def key(what: str, value) -> str:
    """A param, tag or metric key: text of 1 to 255 characters (a metric may be called ``" "``)."""
    value = text(what, value, MAX_NAME)
    if not value:
        raise InvalidArgumentError(f"{what} must be non-empty text, got ''")
    return value


def optional_text(what: str, value, limit: int = MAX_TEXT) -> str | None:
    return None if value is None else text(what, value, limit)


def identifier(what: str, value) -> str:
    """An id (run, experiment, model): non-empty text of at most 64 characters."""
    if not isinstance(value, str) or not value:
        raise InvalidArgumentError(f"{what} must be an id string, got {_repr(value)}")
    return text(what, value, MAX_ID)


def value_text(what: str, value, limit: int = MAX_VALUE) -> str:
    """A param or tag value as stored: text as is, anything else through ``str``."""
    if not isinstance(value, str):
        try:
            value = str(value)
        except Exception as exc:  # noqa: BLE001 - e.g. int -> str past Python's digit limit
            raise InvalidArgumentError(f"{what} cannot be turned into text ({type(exc).__name__}: {exc}); "
                                       "log it as text (or a shorter value)") from None
    return text(what, value, limit)


def number(what: str, value) -> float:
    """A finite or infinite float; ``InvalidArgumentError`` for what a float cannot hold."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            value.__float__
        except AttributeError:
            raise InvalidArgumentError(f"{what} must be a number, got {type(value).__name__} {_repr(value)}") from None
    try:
        return float(value)
    except OverflowError:
        raise InvalidArgumentError(f"{what} is too large for a 64-bit float: {_repr(value)}") from None
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentError(f"{what} must be a number, got {_repr(value)} ({exc})") from None


def timestamp(what: str, value) -> float:
    """Epoch seconds of a date a calendar can show (years 1 to 9999)."""
    stamp = number(what, value)
    if not -62135596800.0 <= stamp <= 253402300799.0:
        raise InvalidArgumentError(f"{what} must be epoch seconds between the years 1 and 9999, got {_repr(value)}")
    return stamp


def step(what: str, value) -> int:
    """A metric step: an integer (Python or numpy) between -2**63 and 2**63 - 1."""
    if type(value) is not int:
        if isinstance(value, bool):
            raise InvalidArgumentError(f"{what} must be an integer, got {value!r}")
        try:
            value = int(value.__index__())
        except (AttributeError, TypeError):
            raise InvalidArgumentError(f"{what} must be an integer, got {_repr(value)}") from None
    if not MIN_STEP <= value <= MAX_STEP:
        raise InvalidArgumentError(f"{what} {value} is out of range: steps are 64-bit integers "
                                   f"({MIN_STEP} to {MAX_STEP})")
    return value


def finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def string_dict(what: str, pairs, *, value_limit: int = MAX_VALUE) -> dict:
    """``{name: text}`` from a dict of names to values (values through ``str``)."""
    if not isinstance(pairs, dict):
        raise InvalidArgumentError(f"{what} takes a dict of name -> value, got {type(pairs).__name__}")
    clean = {}
    for name_, value in pairs.items():
        if not isinstance(name_, str):
            raise InvalidArgumentError(f"{what}: names are text, got {type(name_).__name__} {_repr(name_)}")
        name_ = key(f"{what}: name", name_)
        clean[name_] = value_text(f"{what}: value of {name_!r}", value, value_limit)
    return clean
