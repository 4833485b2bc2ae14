"""What ``log_dataset`` computes: a content digest, and a schema and profile from a DataFrame.

The digest of a local file (or of a folder: every file, in path order) is the
SHA-256 of its bytes, computed when the data is at most 500 MB; it is what makes
two runs that read the same file share one dataset record. A DataFrame given
without a file is fingerprinted from its columns, dtypes and row hashes.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from ..errors import InvalidArgumentError
from . import _validate as V
from .store import DATASET_CONTEXTS, SOURCE_TYPES

__all__ = ["MAX_DIGEST_BYTES", "file_digest", "dataframe_digest", "dataframe_schema", "dataframe_profile",
           "source_type_of", "describe", "check_record"]

MAX_DIGEST_BYTES = 500 * 1024 * 1024
_BLOCK = 1024 * 1024
_SCHEMES = {"s3": "s3", "gs": "gcs", "gcs": "gcs", "http": "url", "https": "url"}


def source_type_of(path: str | None) -> str:
    """``s3``/``gcs``/``url`` from a URI's scheme, else ``local``."""
    if path and "://" in path:
        scheme = path.split("://", 1)[0].lower()
        return _SCHEMES.get(scheme, "url")
    return "local"


def _files(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    return sorted((p for p in root.rglob("*") if p.is_file()), key=lambda p: p.relative_to(root).as_posix())


def _sha256(path: Path) -> "hashlib._Hash":
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_BLOCK), b""):
            digest.update(block)
    return digest


def file_digest(path: str | os.PathLike, limit: int = MAX_DIGEST_BYTES) -> str:
    """Hex SHA-256 of a file, or of a folder's files (relative paths and bytes, in path order);
    ``""`` when the data is larger than ``limit`` bytes."""
    root = Path(path)
    files = _files(root)
    if sum(f.stat().st_size for f in files) > limit:
        return ""
    if root.is_file():
        return _sha256(root).hexdigest()
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.relative_to(root).as_posix().encode() + b"\0")
        digest.update(_sha256(f).digest())
    return digest.hexdigest()


def dataframe_schema(df) -> dict:
    """Column name -> dtype name, e.g. ``{"text": "object", "label": "int64"}``."""
    return {str(column): str(dtype) for column, dtype in df.dtypes.items()}


def dataframe_profile(df) -> dict:
    """``num_rows`` and ``num_features`` (columns), plus per-column missing values when any."""
    profile = {"num_rows": int(len(df)), "num_features": int(df.shape[1])}
    try:
        missing = {str(c): int(n) for c, n in df.isna().sum().items() if int(n)}
    except Exception:  # noqa: BLE001 - exotic column types: the counts are optional
        missing = {}
    if missing:
        profile["missing_values"] = missing
    return profile


def dataframe_digest(df) -> str:
    """Hex SHA-256 of a DataFrame's columns, dtypes and row hashes (``""`` if it cannot be hashed)."""
    try:
        import pandas as pd

        rows = pd.util.hash_pandas_object(df, index=True).to_numpy().tobytes()
    except Exception:  # noqa: BLE001 - unhashable cells (lists, dicts): no digest, no dedup
        return ""
    digest = hashlib.sha256()
    digest.update(repr(dataframe_schema(df)).encode())
    digest.update(rows)
    return digest.hexdigest()


def describe(name, path, df, context, digest, source_type, tags) -> dict:
    """Validate ``log_dataset``'s arguments and compute what the record needs (no id, no times)."""
    name = V.name("log_dataset: name", name)
    if context not in DATASET_CONTEXTS:
        raise InvalidArgumentError(f"log_dataset: context {context!r} is not one of {list(DATASET_CONTEXTS)}")
    if path is not None and not isinstance(path, (str, os.PathLike)):
        raise InvalidArgumentError(f"log_dataset: path must be a file path or URI string, got {type(path).__name__}")
    source = V.text("log_dataset: path", os.fspath(path), V.MAX_VALUE) if path is not None else ""
    if source_type is None:
        source_type = source_type_of(source)
    if source_type not in SOURCE_TYPES:
        raise InvalidArgumentError(
            f"log_dataset: source_type {source_type!r} is not one of {list(SOURCE_TYPES)}")
    if df is not None and not (hasattr(df, "dtypes") and hasattr(df, "shape")):
        raise InvalidArgumentError(f"log_dataset: df must be a pandas DataFrame, got {type(df).__name__}")
    if digest is not None:
        if not (isinstance(digest, str) and len(digest) == 64 and all(c in "0123456789abcdef" for c in digest.lower())):
            raise InvalidArgumentError(f"log_dataset: digest must be a 64-character hex SHA-256, got {digest!r}")
        digest = digest.lower()
    tags = V.string_dict("log_dataset: tags", tags) if tags is not None else {}
    if source_type == "local" and source and digest is None:
        if not os.path.exists(source):
            raise InvalidArgumentError(f"log_dataset: {source!r} does not exist (pass an existing file or folder, "
                                       "a URI with source_type, or digest=)")
        digest = file_digest(source)
    if digest is None and df is not None and not source:
        digest = dataframe_digest(df)
    return {"name": name, "digest": digest or "", "source_type": source_type, "source": source,
            "schema": dataframe_schema(df) if df is not None else {},
            "profile": dataframe_profile(df) if df is not None else {},
            "tags": tags}


_MAX_PROFILE_CHARS = 1024 * 1024


def check_record(record, context) -> dict:
    """A record made by :func:`describe` elsewhere (a GPU session), checked field by field."""
    import json

    if not isinstance(record, dict):
        raise InvalidArgumentError(f"a dataset record is a dict of describe()'s fields, got {type(record).__name__}")
    if context not in DATASET_CONTEXTS:
        raise InvalidArgumentError(f"log_dataset: context {context!r} is not one of {list(DATASET_CONTEXTS)}")
    name = V.name("log_dataset: name", record.get("name"))
    source = V.text("log_dataset: path", record.get("source", ""), V.MAX_VALUE)
    source_type = record.get("source_type")
    if source_type not in SOURCE_TYPES:
        raise InvalidArgumentError(f"log_dataset: source_type {source_type!r} is not one of {list(SOURCE_TYPES)}")
    digest = record.get("digest") or ""
    if digest and not (isinstance(digest, str) and len(digest) == 64 and all(c in "0123456789abcdef" for c in digest)):
        raise InvalidArgumentError(f"log_dataset: digest must be a 64-character hex SHA-256, got {digest!r}")
    schema = V.string_dict("log_dataset: schema", record.get("schema") or {})
    profile = record.get("profile") or {}
    if not isinstance(profile, dict):
        raise InvalidArgumentError(f"log_dataset: profile must be a dict, got {type(profile).__name__}")
    try:
        shown = json.dumps(profile, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentError(f"log_dataset: profile must hold JSON values ({exc})") from None
    V.text("log_dataset: profile", shown, _MAX_PROFILE_CHARS)
    tags = V.string_dict("log_dataset: tags", record.get("tags") or {})
    return {"name": name, "digest": digest, "source_type": source_type, "source": source, "schema": schema,
            "profile": profile, "tags": tags}
