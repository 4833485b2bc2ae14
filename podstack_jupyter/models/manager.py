"""``ModelManager``: the model registry as a model manager, in the idiom of aipmodel's ``MLOpsManager``.

For code written against aipmodel (seed 004): add models from a local folder, an S3 location or
the Hugging Face hub with automatic versions, categories and tags; look at them; download them;
move the ``latest`` pointer; delete versions or whole models::

    from podstack_jupyter.models import ModelManager

    manager = ModelManager(verbose=True)        # the notebook's store and artifact store, checked now
    manager.add_model(source_type="local", model_name="demo_model_local", version="v1.0",
                      source_path="./my_models/v1", code_path="./my_models/train.py",
                      category="Text Generation", tags=["production", "base-model"])
    manager.add_model(source_type="local", model_name="demo_model_local", version=None,   # -> _v2
                      source_path="./my_models/v2_finetuned", tags=["experimental"])
    manager.add_model(source_type="hf", model_name="demo_model_hf", version="v1",
                      source_path="facebook/wav2vec2-base-960h", category="Speech Recognition")
    manager.add_model(source_type="s3", model_name="demo_model_s3", version="v1",
                      source_path="s3://training/jobs/checkpoint-500")
    manager.get_model_info("demo_model_local")           # prints, with the web link; returns a dict
    manager.list_models(verbose=True)
    manager.get_model("demo_model_local", "./downloads/latest")        # the version marked latest
    manager.set_latest_version("demo_model_local", "v1.0")
    manager.delete_model("demo_model_local", version="v1.0")
    manager.delete_model("demo_model_hf")                               # the whole model

A face over :class:`~podstack_jupyter.models.ModelRegistryClient`: the same models that
``podstack.registry`` and :class:`~podstack_jupyter.models.ModelRegistry` see, under the same
rules (:mod:`podstack_jupyter.models._rules`: reserved name prefixes, ``_`` reserved for automatic
versions, the categories). Added files are copied into the artifact store (local folder or S3),
verified by sha256 when fetched again, and held by a run in the experiment "Model uploads".
"""

from __future__ import annotations

import json
import os

from ..errors import ConfigurationError, InvalidArgumentError, PodstackError
from ..tracking._entities import ModelVersion, RegisteredModel
from . import _rules as R
from .client import ModelRegistryClient

__all__ = ["ModelManager"]


def _size_text(size: int | None) -> str:
    if size is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return "-"


class ModelManager:
    """Models by name: see the module docstring.

    ``tracking_uri`` / ``artifact_root``: the store and artifact store to use (default: the
    notebook's settings). Both are opened and checked now (fail fast: an unreachable database or
    bucket is a ``ConfigurationError`` here, not at the first upload). ``web_host``: the address of
    the web page that shows models (``<web_host>/models/<id>``; default: the ``podstack server`` of
    the settings, if any). ``verbose``: print each step. ``hf_endpoint``: a Hugging Face hub
    mirror for ``source_type="hf"`` (default: ``HF_ENDPOINT``, else the hub).
    """

    def __init__(self, tracking_uri: str | None = None, artifact_root: str | None = None, *,
                 web_host: str | None = None, verbose: bool = False, hf_endpoint: str | None = None):
        from ..artifacts import open_repository
        from ..config import settings
        from ..tracking import TrackingClient, open_store

        resolved = settings()
        self._own_store = None
        if tracking_uri is None and artifact_root is None:
            from .registry import model_client

            self._client = model_client()
        else:
            store = self._own_store = open_store(tracking_uri or resolved.tracking_url)
            self._client = ModelRegistryClient(TrackingClient(store, open_repository(
                artifact_root or resolved.artifact_url)))
        self.web_host = (web_host or resolved.registry_url or "").rstrip("/") or None
        self.verbose = bool(verbose)
        self.hf_endpoint = hf_endpoint
        from .kubeflow import _default_author

        self.user = _default_author()  # the author of what this manager adds
        try:
            self._check()
        except BaseException:
            self.close()
            raise

    def __repr__(self):
        return f"ModelManager({self._client.store!r})"

    def close(self) -> None:
        """Close the store this manager opened (``tracking_uri=``/``artifact_root=``)."""
        if self._own_store is not None:
            self._own_store.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _say(self, text: str) -> None:
        if self.verbose:
            print(f"[podstack] {text}")

    def _check(self) -> None:
        """Fail fast: the store answers and the artifact store can be written."""
        self._client.list_registered_models()
        artifacts = self._client.tracking.artifacts
        if hasattr(artifacts, "check"):
            artifacts.check()
        else:
            root = getattr(artifacts, "root", None)
            if root is not None:
                try:
                    root.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise ConfigurationError(f"the artifact folder {root} cannot be created: {exc}") from None
                if not os.access(root, os.W_OK):
                    raise ConfigurationError(f"the artifact folder {root} is not writable")
        self._say(f"connected: {self._client.store!r}, artifacts in {artifacts!r}")

    # -- adding ----------------------------------------------------------------------------------
    def add_model(self, source_type: str, model_name: str, version: str | None = None, source_path=None,
                  code_path=None, category: str | None = None, tags=None, *, description: str | None = None,
                  metadata: dict | None = None, revision: str | None = None) -> str:
        """Copy a model's files into the registry as a new version; returns the version's id.

        ``source_type``: ``"local"`` (a file or folder), ``"s3"`` (``s3://bucket/prefix``, or a key
        in the bucket of an ``s3://`` artifact root) or ``"hf"`` (a Hugging Face repo id, at
        ``revision``). ``version``: a name such as ``"v1.0"``; ``None`` gives the next automatic
        one (``_v1``, ``_v2``...). ``category``: one of ``MODEL_CATEGORIES``; ``tags``: a list of
        labels (added to the model's). ``code_path``: the code that made it, kept beside it.
        """
        if source_path is None:
            raise InvalidArgumentError("add_model: source_path is required (a folder, an s3:// location or a "
                                       "Hugging Face repo id)")
        chosen = self._client.upload_model(model_name, source_path, source_type=source_type, version=version,
                                           code_path=code_path, author=self.user, category=category, tags=tags, description=description,
                                           metadata=metadata, revision=revision, hf_endpoint=self.hf_endpoint,
                                           progress=self._say)
        return chosen.id

    # -- reading ---------------------------------------------------------------------------------
    def _model_of(self, identifier) -> tuple[RegisteredModel, ModelVersion | None]:
        """The model a name, a model id or a version id names (and that version for the latter)."""
        found = self._client.find_registered_model(identifier)
        if found is not None:
            return found, None
        for model in self._client.list_registered_models():
            for version in model.versions:
                if version.id == identifier:
                    return model, version
        return self._client.get_registered_model(identifier), None  # ModelNotFoundError with the names

    def web_link(self, model: RegisteredModel) -> str | None:
        """Where the model can be seen in a browser (``None`` without a web host)."""
        return f"{self.web_host}/models/{model.id}" if self.web_host else None

    def _version_size(self, version: ModelVersion) -> int | None:
        try:
            files = self._client.version_files(version)
        except PodstackError:
            return None
        return None if files is None else sum(f["size"] for f in files)

    def _version_info(self, version: ModelVersion, latest: int | None) -> dict:
        return {"id": version.id, "version": version.version_name, "number": version.version,
                "latest": version.version == latest, "stage": version.stage, "created_at": version.created_at,
                "author": version.author, "description": version.description, "uri": version.uri,
                "run_id": version.run_id, "size": self._version_size(version), "metadata": dict(version.metadata)}

    def get_model_info(self, identifier: str) -> dict:
        """Print and return a model's details: id, name, category, tags, owner, the number of
        versions, the latest, the web link and the history of its versions. ``identifier``: the
        model's name or id, or a version's id."""
        model, asked = self._model_of(identifier)
        latest = model.latest_version_number
        info = {"id": model.id, "name": model.name, "category": model.category, "tags": list(model.tags),
                "owner": model.owner, "description": model.description, "total_versions": len(model.versions),
                "latest_version": model.latest_version.version_name if model.latest_version else None,
                "web_link": self.web_link(model), "created_at": model.created_at,
                "versions": [self._version_info(v, latest) for v in model.versions]}
        if asked is not None:
            info["asked_version"] = asked.version_name
        lines = [f"Model: {model.name}", f"  ID:        {model.id}", f"  Category:  {model.category or '-'}",
                 f"  Tags:      {', '.join(info['tags']) or '-'}", f"  Owner:     {model.owner or '-'}",
                 f"  Versions:  {len(model.versions)} (latest: {info['latest_version'] or '-'})",
                 f"  Web link:  {info['web_link'] or '(no web host: podstack models show ' + repr(model.name) + ')'}",
                 "  History:"]
        for v in reversed(info["versions"]):
            mark = "*" if v["latest"] else (">" if v["version"] == info.get("asked_version") else " ")
            lines.append(f"   {mark} {v['version']:<12} #{v['number']:<3} {v['stage']:<11} "
                         f"{(v['created_at'] or '-')[:19].replace('T', ' ')}  {_size_text(v['size']):>9}  "
                         f"{v['author'] or '-'}  {v['uri'] or '-'}")
        print("\n".join(lines))
        return info

    def list_models(self, verbose: bool = False) -> list[dict]:
        """Print and return every model with its latest version, that version's size and the
        number of versions; ``verbose=True`` prints each model's full details as JSON."""
        rows = []
        for model in self._client.list_registered_models():
            latest = model.latest_version
            rows.append({"id": model.id, "name": model.name, "category": model.category, "tags": list(model.tags),
                         "latest_version": latest.version_name if latest else None,
                         "size": self._version_size(latest) if latest else None, "versions": len(model.versions)})
        if verbose:
            details = [self._details(r["id"]) for r in rows]
            print(json.dumps(details, indent=2, sort_keys=True, default=str))
            return details
        width = max([len(r["name"]) for r in rows] + [5])
        lines = [f"{'MODEL':<{width}}  {'LATEST':<12}  {'SIZE':>9}  VERSIONS  CATEGORY"]
        lines += [f"{r['name']:<{width}}  {(r['latest_version'] or '-'):<12}  {_size_text(r['size']):>9}  "
                  f"{r['versions']:>8}  {r['category'] or '-'}" for r in rows]
        print("\n".join(lines) if rows else "no models")
        return rows

    def _details(self, model_id: str) -> dict:
        model = self._client.get_registered_model(model_id)
        latest = model.latest_version_number
        return {"id": model.id, "name": model.name, "category": model.category, "tags": dict(model.tags),
                "owner": model.owner, "description": model.description, "state": model.state,
                "metadata": dict(model.metadata), "web_link": self.web_link(model),
                "latest_version": model.latest_version.version_name if model.latest_version else None,
                "versions": [self._version_info(v, latest) for v in model.versions]}

    # -- files and pointers ------------------------------------------------------------------------
    def get_model(self, model_name: str, local_dest, version=None) -> str:
        """Download a version's files into the folder ``local_dest`` (the version marked latest when
        ``version`` is omitted); returns the folder's absolute path."""
        chosen = self._client.get_model_version(model_name, version=version)
        self._say(f"downloading {chosen.name} {chosen.version_name} to {os.fspath(local_dest)}")
        return self._client.download_model_version(chosen.model_id, local_dest, version=chosen.version)

    def set_latest_version(self, model_name: str, version) -> str:
        """Mark ``version`` as the model's latest (no file is touched); returns its name."""
        chosen = self._client.set_latest_version(model_name, version)
        self._say(f"{chosen.name}: latest is now {chosen.version_name}")
        return chosen.version_name

    def delete_model(self, model_name: str, version=None) -> dict:
        """Delete ``version`` (the model too when it was its last one), or the whole model when
        ``version`` is omitted. Returns ``{"model", "versions", "model_deleted"}``."""
        if version is not None:
            R.version_ref(version)
        done = self._client.delete_model(model_name, version)
        self._say(f"deleted {done['model']} " + ("(the whole model)" if done["model_deleted"]
                                                 else f"versions {done['versions']}"))
        return done
