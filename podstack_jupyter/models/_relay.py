"""The model registry from inside a GPU session, through the notebook, within the session's scope.

The session half of :mod:`podstack_jupyter.tracking.relay`, for models: inside a GPU session
``registry.log_model`` serializes here, sends the files through the session, and the notebook
checks every file against the manifest, signs the manifest with its own key (which the
session never holds) and stores them in the cell's run; ``register_model`` of that run is
allowed; stages, aliases and versions of other runs are the notebook's (``PermissionDeniedError``
in the session). ``load_model`` in a session asks the notebook whether a manifest is signed.
"""

from __future__ import annotations

import inspect
from pathlib import Path

from ..errors import InvalidArgumentError, PermissionDeniedError
from ..tracking import _validate as V
from ..tracking import relay
from ..tracking.client import clean_artifact_path
from . import _signing
from .client import ModelRegistryClient

__all__ = ["RelayModelClient", "client_for", "handle_model_call", "OP"]

OP = "models.relay"


def client_for(tracking) -> ModelRegistryClient:
    """The model registry client over ``tracking``: a :class:`RelayModelClient` inside a GPU session."""
    if isinstance(tracking, relay.RelayClient):
        return RelayModelClient(tracking)
    return ModelRegistryClient(tracking)


class RelayModelClient(ModelRegistryClient):
    """A :class:`ModelRegistryClient` inside a GPU session: reads run here over the relay's
    read-only store; writes are calls of the notebook, which allows or refuses them."""

    def __init__(self, tracking: relay.RelayClient):
        super().__init__(tracking)
        self._agent = tracking._agent
        _signing.remote_check = lambda manifest: self._call("check_signature", manifest)

    def __repr__(self):
        return "RelayModelClient(the notebook's model registry, through this GPU session)"

    def _call(self, method, *args, **kwargs):
        return relay.call_notebook(self._agent, OP, method, args, kwargs)

    def _version(self, answer):
        return self.get_model_version(answer["model_id"], version=answer["version"])

    def ensure_registered_model(self, name, description=None):
        return self._call("ensure_registered_model", name, description)

    def create_registered_model(self, name, description=None):
        return self._call("create_registered_model", name, description)

    def create_model_version(self, name_or_id, run_id=None, source=None, framework=None, description=None):
        return self._version(self._call("create_model_version", name_or_id, run_id, source, framework, description))

    def register_model(self, name, run_id=None, description=None, *, artifact_path=None):
        return self._version(self._call("register_model", name, run_id, description, artifact_path=artifact_path))

    def set_model_stage(self, name_or_id, version, stage, archive_existing=False):
        return self._call("set_model_stage", name_or_id, version, stage, archive_existing)

    def set_model_alias(self, name_or_id, alias, version):
        self._call("set_model_alias", name_or_id, alias, version)

    def delete_model_alias(self, name_or_id, alias):
        self._call("delete_model_alias", name_or_id, alias)

    def log_model_folder(self, run_id, folder, artifact_path="model", metadata=None) -> dict:
        folder = Path(folder)
        files = [(path, path.relative_to(folder).as_posix()) for path in sorted(folder.rglob("*")) if path.is_file()]
        upload = relay.send_files(self._agent, V.identifier("run_id", run_id), files)
        return self._call("log_model_upload", upload, clean_artifact_path(artifact_path),
                          V.string_dict("log_model: metadata", metadata or {}))


# -- notebook side -----------------------------------------------------------------------------
def _run_of(scope, run_id, what: str) -> str:
    if run_id is None:
        scope.refuse(what, "a model version made from a GPU session belongs to a run, and none was given")
    return scope.writable(run_id, what)


def _create_model_version(scope, models, name_or_id, run_id=None, source=None, framework=None, description=None):
    version = models.create_model_version(name_or_id, _run_of(scope, run_id, "create_model_version"), source,
                                          framework, description)
    return {"model_id": version.model_id, "version": version.version}


def _register_model(scope, models, name, run_id=None, description=None, *, artifact_path=None):
    version = models.register_model(name, _run_of(scope, run_id, "register_model"), description,
                                    artifact_path=artifact_path)
    return {"model_id": version.model_id, "version": version.version}


def _log_model_upload(scope, models, upload_id, artifact_path, metadata):
    from ._flavors import sign_folder

    upload = relay.take_upload(scope, upload_id)
    try:
        run_id = scope.writable(upload.run_id, "log_model")
        upload.complete()
        sign_folder(upload.folder)  # every file checked against the manifest, then vouched for by this machine
        return models.log_model_folder(run_id, upload.folder, artifact_path, metadata)
    finally:
        upload.discard()


def _check_signature(scope, models, manifest):
    if not isinstance(manifest, dict):
        return "the manifest sent is not a dict"
    return _signing.signature_problem(manifest)


_OPERATIONS = {
    "create_model_version": _create_model_version,
    "register_model": _register_model,
    "log_model_upload": _log_model_upload,
    "check_signature": _check_signature,
}
_ONLY_AS_A_VERSION = ("a GPU session registers a model only as a version of its run: "
                      "registry.register_model(name, run_id=...)")
_REFUSED = {
    "ensure_registered_model": _ONLY_AS_A_VERSION,
    "create_registered_model": _ONLY_AS_A_VERSION,
    "set_model_stage": "moving a model version between stages (production, staging...) is the notebook's decision",
    "set_model_alias": "pointing a model's aliases at versions is the notebook's decision",
    "delete_model_alias": "removing a model's aliases is the notebook's decision",
}


def handle_model_call(data: dict, buffers: list):
    """Notebook side: run a model-registry call a GPU session relayed, if its scope allows it."""
    method = data.get("method")
    scope = relay.current_scope()
    if method in _REFUSED:
        scope.refuse(method, _REFUSED[method])
    operation = _OPERATIONS.get(method)
    if operation is None:
        raise PermissionDeniedError(f"{method!r} is not something a GPU session can ask of the notebook's model "
                                    "registry")
    args, kwargs = data.get("args") or [], data.get("kwargs") or {}
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise InvalidArgumentError("a relayed call has a list of args and a dict of kwargs")
    try:
        inspect.signature(operation).bind(scope, None, *args, **kwargs)
    except TypeError as exc:
        raise InvalidArgumentError(f"{method}: {exc}") from None
    from .registry import model_client

    return operation(scope, model_client(), *args, **kwargs)
