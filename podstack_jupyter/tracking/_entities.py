"""The objects the registry hands out: experiments, datasets, metric points, models and versions.

They are snapshots of store records (``from_record``); the ``Run`` handle lives in
``runs.py`` because it also logs.
"""

from __future__ import annotations

import array
import base64
import dataclasses
import datetime as _dt
import sys
from typing import NamedTuple

__all__ = ["Experiment", "Dataset", "MetricPoint", "MetricHistory", "RegisteredModel", "ModelVersion", "ModelLineage",
           "iso"]


def _rich_display(obj, include=None, exclude=None):
    """A notebook display of ``obj`` by the provider registered under the entry-point group
    ``podstack.display`` (the widgets: a chart or graph, with text for terminals), else its repr."""
    from importlib.metadata import entry_points

    for provider in entry_points(group="podstack.display"):
        return provider.load()(obj, include, exclude)
    return {"text/plain": repr(obj)}


def iso(timestamp: float | None) -> str | None:
    """Epoch seconds as an ISO 8601 UTC timestamp (``None`` stays ``None``)."""
    if timestamp is None:
        return None
    return _dt.datetime.fromtimestamp(timestamp, _dt.timezone.utc).isoformat()


@dataclasses.dataclass(frozen=True)
class Experiment:
    """A named group of runs. ``with podstack.experiment(name=...) as exp: exp.id``."""

    id: str
    name: str
    description: str | None = None
    tags: dict = dataclasses.field(default_factory=dict)
    created_at: str | None = None

    @classmethod
    def from_record(cls, r: dict) -> "Experiment":
        return cls(id=r["id"], name=r["name"], description=r.get("description"), tags=dict(r.get("tags") or {}),
                   created_at=iso(r.get("created_at")))


_DATASET_FIELDS = ("id", "name", "digest", "source_type", "source", "schema", "profile", "tags", "created_at")


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A dataset record, shared by every run that logged the same data.

    ``id``, ``name``, ``digest`` (hex SHA-256, ``""`` when not computed), ``source_type``
    (``local``/``s3``/``gcs``/``url``), ``source`` (path or URI as given), ``schema``
    (column -> dtype), ``profile`` (``num_rows``, ``num_features``, ...), ``tags`` and
    ``created_at`` (ISO 8601). ``context`` is the role the dataset played in the run it
    was listed for (``training``/``validation``/``test``), ``None`` otherwise.
    """

    id: str
    name: str
    digest: str = ""
    source_type: str = "local"
    source: str = ""
    schema: dict = dataclasses.field(default_factory=dict)
    profile: dict = dataclasses.field(default_factory=dict)
    tags: dict = dataclasses.field(default_factory=dict)
    created_at: str | None = None
    context: str | None = dataclasses.field(default=None, compare=False)

    @classmethod
    def from_record(cls, r: dict) -> "Dataset":
        return cls(id=r["id"], name=r["name"], digest=r.get("digest") or "", source_type=r.get("source_type") or "local",
                   source=r.get("source") or "", schema=dict(r.get("schema") or {}),
                   profile=dict(r.get("profile") or {}), tags=dict(r.get("tags") or {}),
                   created_at=r["created_at"] if isinstance(r.get("created_at"), str) else iso(r.get("created_at")),
                   context=r.get("context"))

    def to_dict(self) -> dict:
        """The nine documented fields, as in ``get_model_lineage()``'s ``datasets`` entries."""
        return {f: (dict(getattr(self, f)) if isinstance(getattr(self, f), dict) else getattr(self, f))
                for f in _DATASET_FIELDS}


class MetricPoint(NamedTuple):
    """One logged value: ``step``, ``value`` and ``timestamp`` (epoch seconds)."""

    step: int
    value: float
    timestamp: float


def _unpack(typecode: str, text: str) -> array.array:
    values = array.array(typecode)
    values.frombytes(base64.b64decode(text))
    if sys.byteorder == "big":
        values.byteswap()
    return values


class MetricHistory:
    """Every point logged for one metric of one run, ordered by step.

    A sequence of :class:`MetricPoint` (``for p in history: p.step, p.value``,
    ``history[-1]``, ``len(history)``). The columns are also at hand without
    building a point per value: ``.steps``, ``.values``, ``.timestamps`` (``array``
    objects, which ``numpy.asarray`` takes without copying), ``to_numpy()`` and
    ``to_pandas()``.
    """

    __slots__ = ("run_id", "key", "steps", "values", "timestamps")

    def __init__(self, run_id: str, key: str, steps, values, timestamps):
        self.run_id, self.key = run_id, key
        self.steps, self.values, self.timestamps = steps, values, timestamps

    @classmethod
    def from_packed(cls, run_id: str, key: str, packed: dict) -> "MetricHistory":
        return cls(run_id, key, _unpack("q", packed["steps"]), _unpack("d", packed["values"]),
                   _unpack("d", packed["timestamps"]))

    def __len__(self):
        return len(self.steps)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return MetricHistory(self.run_id, self.key, self.steps[index], self.values[index], self.timestamps[index])
        return MetricPoint(self.steps[index], self.values[index], self.timestamps[index])

    def __iter__(self):
        return map(MetricPoint, self.steps, self.values, self.timestamps)

    def __eq__(self, other):
        if isinstance(other, MetricHistory):
            return (self.steps, self.values, self.timestamps) == (other.steps, other.values, other.timestamps)
        if isinstance(other, (list, tuple)):
            return list(self) == list(other)
        return NotImplemented

    def __repr__(self):
        shown = ", ".join(f"({p.step}, {p.value:g})" for p in self[:3])
        more = ", ..." if len(self) > 3 else ""
        return f"<MetricHistory {self.key!r} of run {self.run_id[:8]}: {len(self)} points [{shown}{more}]>"

    def _repr_mimebundle_(self, include=None, exclude=None):
        return _rich_display(self, include, exclude)

    def to_numpy(self):
        """``(steps, values, timestamps)`` as numpy arrays."""
        import numpy as np

        return (np.frombuffer(self.steps, dtype=np.int64), np.frombuffer(self.values, dtype=np.float64),
                np.frombuffer(self.timestamps, dtype=np.float64))

    def to_pandas(self):
        """A DataFrame with columns ``step``, ``value``, ``timestamp``."""
        import pandas as pd

        steps, values, stamps = self.to_numpy()
        return pd.DataFrame({"step": steps, "value": values, "timestamp": stamps})


@dataclasses.dataclass(frozen=True)
class ModelVersion:
    """One version of a registered model.

    ``version`` is its number (1, 2, 3...; never reused) and ``version_name`` its name, unique
    in the model: the one given at registration ("1.0.0", "v1.0") or the automatic ``_v<number>``.
    ``name`` is the model's name. ``stage`` (``development``/``staging``/``production``/
    ``archived``); ``state`` is ``ARCHIVED`` in stage ``archived``, else ``LIVE``.

    Where its files are: ``run_id`` and ``source`` (the model's folder among that run's
    artifacts) for a version registered from a run or uploaded, and ``uri`` (``runs:/<run>/<path>``
    then, or where the files live for a version registered by URI); ``model_format_name`` /
    ``model_format_version``, ``storage_key`` / ``storage_path`` describe them. ``framework``:
    how ``log_model`` serialized it. ``author``, ``owner`` (the model's), ``description`` and
    ``metadata`` (typed: bool, int, float, str values as given).
    """

    id: str
    model_id: str
    name: str
    version: int
    run_id: str | None
    stage: str
    source: str | None = None
    framework: str | None = None
    description: str | None = None
    aliases: tuple = ()
    created_at: str | None = None
    updated_at: str | None = None
    version_name: str | None = None
    uri: str | None = None
    model_format_name: str | None = None
    model_format_version: str | None = None
    storage_key: str | None = None
    storage_path: str | None = None
    author: str | None = None
    owner: str | None = None
    metadata: dict = dataclasses.field(default_factory=dict)

    @property
    def state(self) -> str:
        return "ARCHIVED" if self.stage == "archived" else "LIVE"

    def _repr_mimebundle_(self, include=None, exclude=None):
        return _rich_display(self, include, exclude)

    @classmethod
    def from_record(cls, r: dict, name: str, aliases=(), owner: str | None = None) -> "ModelVersion":
        uri = r.get("uri")
        if uri is None and r.get("run_id") and r.get("source"):
            uri = f"runs:/{r['run_id']}/{r['source']}"
        return cls(id=r["id"], model_id=r["model_id"], name=name, version=r["version"], run_id=r.get("run_id"),
                   stage=r["stage"], source=r.get("source"), framework=r.get("framework"),
                   description=r.get("description"), aliases=tuple(aliases), created_at=iso(r.get("created_at")),
                   updated_at=iso(r.get("updated_at")), version_name=r.get("name") or f"_v{r['version']}", uri=uri,
                   model_format_name=r.get("model_format_name"), model_format_version=r.get("model_format_version"),
                   storage_key=r.get("storage_key"), storage_path=r.get("storage_path"), author=r.get("author"),
                   owner=owner, metadata=dict(r.get("properties") or {}))


@dataclasses.dataclass(frozen=True)
class RegisteredModel:
    """A registered model: ``id``, ``name``, ``description``, ``versions`` (oldest first),
    ``aliases`` (alias -> version number), ``latest_version`` (the version ``set_latest_version``
    pinned, else the newest), ``owner``, ``category``, ``tags``, ``state`` (``LIVE``/``ARCHIVED``)
    and typed ``metadata``."""

    id: str
    name: str
    description: str | None = None
    versions: tuple = ()
    aliases: dict = dataclasses.field(default_factory=dict)
    tags: dict = dataclasses.field(default_factory=dict)
    created_at: str | None = None
    updated_at: str | None = None
    owner: str | None = None
    category: str | None = None
    state: str = "LIVE"
    metadata: dict = dataclasses.field(default_factory=dict)
    #: the number ``latest_version`` is: the pinned one, else the newest (``None``: no versions)
    latest_version_number: int | None = None

    def _repr_mimebundle_(self, include=None, exclude=None):
        return _rich_display(self, include, exclude)

    @classmethod
    def from_record(cls, r: dict) -> "RegisteredModel":
        by_version: dict[int, list] = {}
        for alias, number in (r.get("aliases") or {}).items():
            by_version.setdefault(number, []).append(alias)
        versions = tuple(ModelVersion.from_record(v, r["name"], sorted(by_version.get(v["version"], ())), r.get("owner"))
                         for v in r.get("versions") or ())
        numbers = {v.version for v in versions}
        pinned = r.get("latest_version")
        latest = pinned if pinned in numbers else (versions[-1].version if versions else None)
        return cls(id=r["id"], name=r["name"], description=r.get("description"), versions=versions,
                   aliases=dict(r.get("aliases") or {}), tags=dict(r.get("tags") or {}),
                   created_at=iso(r.get("created_at")), updated_at=iso(r.get("updated_at")), owner=r.get("owner"),
                   category=r.get("category"), state=r.get("state") or "LIVE",
                   metadata=dict(r.get("properties") or {}), latest_version_number=latest)

    @property
    def latest_version(self) -> ModelVersion | None:
        return self.get_version(self.latest_version_number) if self.latest_version_number is not None else None

    def get_version(self, version: int) -> ModelVersion | None:
        return next((v for v in self.versions if v.version == version), None)


class ModelLineage(dict):
    """What ``get_model_lineage`` returns: the documented dict, which a notebook draws as a graph."""

    def _repr_mimebundle_(self, include=None, exclude=None):
        return _rich_display(self, include, exclude)
