"""The JSON the server speaks: request bodies and the entities it answers with.

The shapes are the official Podstack SDK's (``reference/podstack-sdk-rest.md``): ISO 8601
times in ``created_at``/``updated_at``, run times in milliseconds, ``tags`` as objects, and
``project_id`` everywhere. Each entity also carries the exact values this project's REST
store reads back (the SDK ignores fields it does not know): ``created``/``updated``/
``started``/``ended`` in epoch seconds, a run's ``params``, ``metrics``, ``parent_run_id``,
``source`` and ``gpu``, a model's ``versions`` and ``aliases``, a version's ``framework``.

Errors are ``{"error": "<message>", "type": "<podstack error class>"}`` for every 4xx and 5xx.
"""

from __future__ import annotations

import array
import base64
import binascii
import json
import math
import sys
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import JSONResponse

from ..errors import InvalidArgumentError
from ..tracking._entities import iso

__all__ = ["JSON", "experiment_json", "run_json", "dataset_json", "model_json", "version_json", "alias_json",
           "transition_json", "metric_json", "artifact_json", "ms", "NOTES_TAG"]

#: the tag that holds a run's notes (``PATCH /runs/{id}/notes``)
NOTES_TAG = "podstack.notes"


class JSON(JSONResponse):
    """JSON that keeps non-finite metric values (``NaN``, ``Infinity``), as Python's ``json`` reads them."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=False, allow_nan=True, separators=(",", ":")).encode("utf-8")


def ms(seconds: float | None) -> int | None:
    """Epoch seconds as the SDK's integer milliseconds."""
    return None if seconds is None else int(round(seconds * 1000))


def experiment_json(record: dict, project_id: str, stats: tuple | None = None) -> dict:
    run_count, last_run = stats or (0, None)
    return {"id": record["id"], "project_id": project_id, "name": record["name"],
            "description": record.get("description"), "artifact_location": None, "status": "active",
            "tags": record.get("tags") or {}, "run_count": run_count, "last_run_at": iso(last_run),
            "created_by_user_id": None, "created_at": iso(record["created_at"]),
            "updated_at": iso(record["created_at"]), "created": record["created_at"]}


def run_json(record: dict, project_id: str) -> dict:
    start, end = record.get("start_time"), record.get("end_time")
    tags = dict(record.get("tags") or {})
    return {"id": record["id"], "project_id": project_id, "experiment_id": record["experiment_id"],
            "user_id": None, "name": record.get("name"), "status": record["status"], "source_type": None,
            "source_name": None, "artifact_uri": None, "start_time": ms(start), "end_time": ms(end),
            "duration_ms": ms(end - start) if start is not None and end is not None else 0,
            "notes": tags.get(NOTES_TAG), "tags": tags, "created_at": iso(start), "updated_at": iso(end or start),
            # exact values for this project's REST store
            "started": start, "ended": end, "parent_run_id": record.get("parent_run_id"),
            "source": record.get("source"), "gpu": record.get("gpu"), "params": record.get("params") or {},
            "metrics": record.get("metrics") or {}}


def dataset_json(record: dict, project_id: str) -> dict:
    created = record.get("created_at")
    out = {"id": record["id"], "project_id": project_id, "name": record["name"], "digest": record.get("digest") or "",
           "source_type": record.get("source_type") or "local", "source": record.get("source") or "",
           "schema": record.get("schema") or {}, "profile": record.get("profile") or {},
           "tags": record.get("tags") or {}, "created_at": created if isinstance(created, str) else iso(created),
           "created": created if not isinstance(created, str) else None}
    if "context" in record:
        out["context"] = record["context"]
    return out


def version_json(version: dict, project_id: str) -> dict:
    return {"id": version["id"], "model_id": version["model_id"], "project_id": project_id,
            "version": version["version"], "run_id": version.get("run_id"), "source": version.get("source"),
            "status": "ready", "stage": version["stage"], "description": version.get("description"), "tags": {},
            "created_by_user_id": None, "created_at": iso(version["created_at"]),
            "updated_at": iso(version["updated_at"]), "framework": version.get("framework"),
            "created": version["created_at"], "updated": version["updated_at"],
            "exact": {k: version.get(k) for k in _EXACT_VERSION}}


# the store's fields of the richer registry (issue 12), carried as they are under "exact"
_EXACT_VERSION = ("name", "uri", "model_format_name", "model_format_version", "storage_key", "storage_path", "author",
                  "properties")
_EXACT_MODEL = ("owner", "category", "state", "latest_version", "last_version", "properties")


def model_json(record: dict, project_id: str) -> dict:
    versions = record.get("versions") or []
    return {"id": record["id"], "project_id": project_id, "name": record["name"],
            "description": record.get("description"), "tags": record.get("tags") or {},
            "version_count": len(versions), "latest_version": versions[-1]["version"] if versions else 0,
            "created_by_user_id": None, "created_at": iso(record["created_at"]),
            "updated_at": iso(record["updated_at"]), "created": record["created_at"], "updated": record["updated_at"],
            "versions": [version_json(v, project_id) for v in versions], "aliases": dict(record.get("aliases") or {}),
            "exact": {k: record.get(k) for k in _EXACT_MODEL}}


def alias_json(model: dict, alias: str, version: int, project_id: str) -> dict:
    found = next((v for v in model.get("versions") or [] if v["version"] == version), None)
    return {"id": f"{model['id']}:{alias}", "model_id": model["id"], "project_id": project_id, "alias": alias,
            "model_version_id": found["id"] if found else "", "version": version, "created_by_user_id": None,
            "created_at": iso(found["updated_at"]) if found else None,
            "updated_at": iso(found["updated_at"]) if found else None}


def transition_json(row: dict) -> dict:
    return {"id": row["id"], "model_id": row["model_id"], "model_version_id": row.get("model_version_id") or "",
            "project_id": row["project_id"], "version": row["version"], "from_stage": row.get("from_stage"),
            "to_stage": row["to_stage"], "transitioned_by": row.get("transitioned_by"),
            "comment": row.get("comment"), "created_at": iso(row["created_at"])}


def metric_json(key: str, value: float, step: int, timestamp: float) -> dict:
    return {"key": key, "value": value, "step": step, "timestamp": ms(timestamp)}


def artifact_json(entry: dict) -> dict:
    return {"path": entry["path"], "size": entry["size"], "etag": entry["digest"],
            "last_modified": iso(entry["created_at"]), "digest": entry["digest"], "created": entry["created_at"]}


def finite(value: float):
    """A metric value as JSON allows it in strict parsers: ``None`` for NaN and infinities."""
    return value if math.isfinite(value) else None


# -- request bodies --------------------------------------------------------------------------------
class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ExperimentIn(_Body):
    name: str
    description: Optional[str] = None
    tags: Optional[dict[str, Any]] = None
    if_exists: Optional[str] = Field(None, description='"return": answer with the experiment already called '
                                                       '`name` instead of refusing it (this project\'s client)')


class RunIn(_Body):
    experiment_id: str
    name: Optional[str] = None
    tags: Optional[dict[str, Any]] = None
    id: Optional[str] = Field(None, description="the new run's id, chosen by the client (a retry is answered "
                                                "with the run already created)")
    parent_run_id: Optional[str] = None
    source: Optional[str] = Field(None, description="code text kept with the run")
    gpu: Optional[dict[str, Any]] = None


class EndIn(_Body):
    status: str = "completed"


class ParamsIn(_Body):
    params: dict[str, Any]
    sdk_tags: bool = Field(True, description="store `_tag.<key>` params as the run's tags (the official SDK's "
                                             "convention; this project's client sends false)")


class TagsIn(_Body):
    tags: dict[str, Any]


class NotesIn(_Body):
    notes: str


class CompareIn(_Body):
    run_ids: list[str]
    metric_keys: Optional[list[str]] = None


class LookupIn(_Body):
    run_ids: list[str]


class SearchIn(_Body):
    experiment_ids: Optional[list[str]] = None
    statuses: Optional[list[str]] = None
    clauses: list[dict[str, Any]] = []
    order_by: list[dict[str, Any]] = []
    max_results: int = 1000


class MetricIn(_Body):
    key: str
    value: Optional[float] = None
    step: Optional[int] = None
    timestamp: Optional[float] = Field(None, description="epoch milliseconds")


class MetricsIn(_Body):
    metrics: list[MetricIn]
    batch_id: Optional[str] = Field(None, description="a batch sent again with the same id is stored once")


class SeriesIn(_Body):
    run_id: str
    key: str
    count: int
    encoding: str = "base64-le"
    steps: str = Field(description="base64 of little-endian int64 steps")
    values: str = Field(description="base64 of little-endian float64 values")
    timestamps: str = Field(description="base64 of little-endian float64 epoch seconds")


class MetricBatchIn(_Body):
    batch_id: Optional[str] = Field(None, description="a batch sent again with the same id is stored once")
    series: list[SeriesIn]

    def columns(self) -> list:
        """The series as ``(run_id, key, steps, values, timestamps)`` arrays (``InvalidArgumentError``
        naming what is malformed)."""
        series = []
        for s in self.series:
            if s.encoding != "base64-le":
                raise InvalidArgumentError(f"series encoding must be 'base64-le', got {s.encoding!r}")
            if s.count < 0:
                raise InvalidArgumentError(f"series count must be >= 0, got {s.count}")
            where = f"metric {s.key!r} of run {s.run_id!r}"
            series.append((s.run_id, s.key, unpack("q", s.steps, s.count, f"{where}: steps"),
                           unpack("d", s.values, s.count, f"{where}: values"),
                           unpack("d", s.timestamps, s.count, f"{where}: timestamps")))
        return series


class RunUpdate(_Body):
    status: Optional[str] = None
    end_time: Optional[float] = Field(None, description="epoch seconds")
    name: Optional[str] = None
    metrics: Optional[MetricBatchIn] = Field(
        None, description="with an ended status: the run's last points (as /metrics/batch), stored before it ends")


def unpack(typecode: str, text: str, count: int, what: str) -> array.array:
    """A base64 little-endian array of ``count`` items (``InvalidArgumentError`` naming ``what``)."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidArgumentError(f"{what} is not base64") from None
    items = array.array(typecode)
    if len(raw) != count * items.itemsize:
        raise InvalidArgumentError(f"{what} holds {len(raw)} bytes, not the {count * items.itemsize} of {count} "
                                   f"{'int64' if typecode == 'q' else 'float64'} values")
    items.frombytes(raw)
    if sys.byteorder == "big":
        items.byteswap()
    return items


class DatasetIn(_Body):
    name: str
    source_type: Optional[str] = None
    context: str = "training"
    digest: Optional[str] = None
    source: Optional[str] = None
    schema_: Optional[Any] = Field(None, alias="schema")
    profile: Optional[Any] = None
    tags: Optional[Any] = None
    created_at: Optional[float] = None


class UploadUrlIn(_Body):
    artifact_path: str
    content_type: Optional[str] = "application/octet-stream"


class ArtifactEntryIn(_Body):
    path: str
    digest: str
    size: Optional[int] = None
    created_at: Optional[float] = None


class ArtifactsIn(_Body):
    artifacts: list[ArtifactEntryIn]


class BlobUploadIn(_Body):
    digest: str
    size: Optional[int] = None


class BlobFinalizeIn(_Body):
    upload_key: str
    digest: str


class ModelIn(_Body):
    name: str
    description: Optional[str] = None
    tags: Optional[Any] = None
    if_exists: Optional[str] = Field(None, description='"return": answer with the model already called `name`')


class _VersionFiles(_Body):
    uri: Optional[str] = None
    model_format_name: Optional[str] = None
    model_format_version: Optional[str] = None
    storage_key: Optional[str] = None
    storage_path: Optional[str] = None
    author: Optional[str] = None
    properties: Optional[dict] = Field(None, description="typed metadata: an object of bool / int / float / str")


class VersionIn(_VersionFiles):
    run_id: Optional[str] = None
    source: Optional[str] = None
    description: Optional[str] = None
    id: Optional[str] = Field(None, description="the new version's id, chosen by the client (retries are answered "
                                                "with the version already created)")
    framework: Optional[str] = None
    name: Optional[str] = Field(None, description="the version's name (default: the automatic _v<number>)")


class VersionUpdate(_VersionFiles):
    description: Optional[str] = None


class ModelUpdate(_Body):
    description: Optional[str] = None
    owner: Optional[str] = None
    category: Optional[str] = None
    tags: Optional[Any] = None
    state: Optional[str] = None
    properties: Optional[dict] = None
    latest_version: Optional[int] = Field(None, description="pin `latest` to this version number")
    unpin_latest: bool = Field(False, description="`latest` follows the newest version again")


class PageIn(_Body):
    order_by: str = "created_at"
    ascending: bool = True
    limit: int = Field(100, ge=1, le=10_000)
    after: Optional[list] = Field(None, min_length=2, max_length=2,
                                  description="`[value, id]` of the last item of the previous page")


class ArtifactTagIn(_Body):
    name: str
    run_id: str


class StageIn(_Body):
    stage: str
    comment: Optional[str] = None
    archive_existing: bool = False


class AliasIn(_Body):
    alias: str
    version: int
