"""The model registry's naming and value rules, in one place for every face of it.

``podstack.registry`` (seed 000), :class:`~podstack_jupyter.models.ModelRegistry` (seed 002)
and :class:`~podstack_jupyter.models.ModelManager` (seed 004) all reach the store through
:class:`~podstack_jupyter.models.ModelRegistryClient`, which checks every value here:

=====================  ==============================================================================
model names            1 to 255 characters; a *new* model's name may not start with ``tmp_``,
                       ``_tmp_`` or ``#`` (reserved for scratch models); existing ones stay reachable
version names          given ones: 1 to 255 characters, not starting with ``_`` (reserved for the
                       automatic names ``_v1``, ``_v2``..., which ``version=None`` gives); unique
                       per model (``DuplicateError``)
versions, when asked   a number (``1``, ``2``...) or a version name (``"1.0.0"``, ``"_v2"``)
categories             one of :data:`MODEL_CATEGORIES`
tags on a model        a list of labels (``["production"]``: kept as ``{"production": ""}``) or a
                       dict of name -> value; both are the same tags
metadata               a dict of name -> bool, int (64-bit), float (finite) or str, kept as those
                       types (``True`` stays a bool, ``1`` an int, ``1.0`` a float)
=====================  ==============================================================================
"""

from __future__ import annotations

import math
import numbers

from ..errors import InvalidArgumentError
from ..tracking import _validate as V

__all__ = ["RESERVED_MODEL_PREFIXES", "AUTO_VERSION_PREFIX", "MODEL_CATEGORIES", "MODEL_STATES",
           "new_model_name", "version_name", "version_ref", "category", "model_tags", "metadata", "state"]

RESERVED_MODEL_PREFIXES = ("tmp_", "_tmp_", "#")
AUTO_VERSION_PREFIX = "_"
MODEL_STATES = ("LIVE", "ARCHIVED")
MODEL_CATEGORIES = (
    "Text Generation", "Text Classification", "Token Classification", "Question Answering", "Summarization",
    "Translation", "Image Classification", "Object Detection", "Image Segmentation", "Image Generation",
    "Speech Recognition", "Audio Classification", "Tabular Classification", "Tabular Regression",
    "Time Series Forecasting", "Reinforcement Learning", "Other",
)
_INT64 = (-(2 ** 63), 2 ** 63 - 1)


def new_model_name(name) -> str:
    """The name of a model about to be created."""
    name = V.name("model name", name)
    for prefix in RESERVED_MODEL_PREFIXES:
        if name.startswith(prefix):
            raise InvalidArgumentError(
                f"model name {name!r} starts with {prefix!r}, which is reserved (model names may not start with "
                f"{' '.join(repr(p) for p in RESERVED_MODEL_PREFIXES)}); choose another name")
    return name


def version_name(name) -> str | None:
    """A version name given by the user (``None``: the next automatic one)."""
    if name is None:
        return None
    if isinstance(name, int) and not isinstance(name, bool):
        raise InvalidArgumentError(
            f"a new version's name is text such as 'v1.0' or '1.0.0', got the number {name}; version numbers are "
            "given by the registry (1, 2, 3...). Pass version=None for the next automatic name.")
    name = V.name("version name", name)
    if name.startswith(AUTO_VERSION_PREFIX):
        raise InvalidArgumentError(
            f"version name {name!r} starts with '_', which is reserved for automatic versions (_v1, _v2...); "
            "pass version=None to get the next automatic one, or a name such as 'v1.0'")
    return name


def version_ref(version):
    """How a version is asked for: its number (int) or its name (str)."""
    if isinstance(version, bool) or not isinstance(version, (int, str)):
        raise InvalidArgumentError(f"version must be a version number (1, 2, 3...) or a version name such as "
                                   f"'v1.0', got {type(version).__name__} {version!r}")
    if isinstance(version, int):
        if not 1 <= version <= 2 ** 31 - 1:
            raise InvalidArgumentError(f"version must be a version number (1, 2, 3...), got {version!r}")
        return version
    return V.name("version name", version)


def category(value) -> str | None:
    if value is None:
        return None
    if value in MODEL_CATEGORIES:
        return value
    near = [c for c in MODEL_CATEGORIES if isinstance(value, str) and c.lower() == value.strip().lower()]
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    raise InvalidArgumentError(f"category {value!r} is not allowed{hint}; categories: {', '.join(MODEL_CATEGORIES)}")


def model_tags(tags) -> dict:
    """Tags of a model as stored: a list of labels becomes ``{label: ""}``."""
    if tags is None:
        return {}
    if isinstance(tags, dict):
        return V.string_dict("model tags", tags)
    if isinstance(tags, str) or not isinstance(tags, (list, tuple, set, frozenset)):
        raise InvalidArgumentError(f"tags must be a list of strings (e.g. ['production']) or a dict, got "
                                   f"{type(tags).__name__} {tags!r}")
    return {V.key("model tag", tag): "" for tag in tags}


def metadata(what: str, values) -> dict:
    """Typed metadata: ``{name: bool | int | float | str}``, each kept as its type."""
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise InvalidArgumentError(f"{what} must be a dict of name -> bool, int, float or str, got "
                                   f"{type(values).__name__}")
    clean = {}
    for name, value in values.items():
        if not isinstance(name, str):
            raise InvalidArgumentError(f"{what}: names are text, got {type(name).__name__} {name!r}")
        name = V.key(f"{what}: name", name)
        if isinstance(value, bool) or (type(value).__module__ == "numpy" and type(value).__name__ in ("bool", "bool_")):
            clean[name] = bool(value)
        elif isinstance(value, numbers.Integral):
            number = int(value)
            if not _INT64[0] <= number <= _INT64[1]:
                raise InvalidArgumentError(f"{what}: {name!r} = {number} does not fit a 64-bit integer; store it as "
                                           "a string")
            clean[name] = number
        elif isinstance(value, numbers.Real):
            number = float(value)
            if not math.isfinite(number):
                raise InvalidArgumentError(f"{what}: {name!r} = {value!r} is not a finite number; store it as a "
                                           "string (e.g. 'inf')")
            clean[name] = number
        elif isinstance(value, str):
            clean[name] = V.text(f"{what}: value of {name!r}", value)
        else:
            raise InvalidArgumentError(f"{what}: {name!r} is a {type(value).__name__}; metadata values are bool, int, "
                                       "float or str (turn it into one of those, e.g. json.dumps for a list)")
    return clean


def state(value) -> str:
    if value not in MODEL_STATES:
        raise InvalidArgumentError(f"state must be one of {list(MODEL_STATES)}, got {value!r}")
    return value
