"""``ModelRegistry``: the model registry in the idiom of the Kubeflow Model Registry's Python client.

For notebooks and pipelines written against ``model_registry.ModelRegistry`` (seed 002)::

    from podstack_jupyter.models import ModelRegistry, S3Params

    registry = ModelRegistry(author="Data Scientist")      # the notebook's store; or a store URL
    model = registry.register_model("fraud-detector", "s3://ml-models/fraud/model.onnx",
                                    version="1.0.0", model_format_name="onnx", model_format_version="1",
                                    metadata={"accuracy": 0.95, "framework": "scikit-learn"})
    version = registry.get_model_version("fraud-detector", "1.0.0")
    artifact = registry.get_model_artifact("fraud-detector", "1.0.0")       # .uri, .model_format_name...
    for model in registry.get_registered_models().page_size(10).order_by_creation_time().ascending():
        print(model.name, model.state)
    model.description = "Updated description"
    registry.update(model)

It is a face over :class:`~podstack_jupyter.models.ModelRegistryClient`: the same models and
versions that ``podstack.registry`` and :class:`~podstack_jupyter.models.ModelManager` see, under
the same rules. Only the shapes differ: here a version's ``name`` is its *version* name
(``"1.0.0"``; ``podstack.registry``'s ``ModelVersion.name`` is the model's name, as in MLflow),
``custom_properties`` is the typed metadata, ``state`` is ``LIVE``/``ARCHIVED`` (a version is
``ARCHIVED`` in stage ``archived``), a ``ModelArtifact`` is where a version's files are, and
``get_registered_model`` / ``get_model_version`` / ``get_model_artifact`` return ``None`` for what
is not there. A version name that is taken raises ``DuplicateError``.

Not here: the Kubeflow client's experiment tracking (``start_experiment_run``; use
``podstack.registry.start_run``), OCI uploads, TLS and token options of its REST connection.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import getpass

from ..errors import DuplicateError, InvalidArgumentError, ModelNotFoundError
from ..tracking._entities import ModelVersion as _CoreVersion
from ..tracking._entities import RegisteredModel as _CoreModel
from ._pager import Pager
from ._sources import S3Params
from .client import ModelRegistryClient

__all__ = ["ModelRegistry", "RegisteredModel", "ModelVersion", "ModelArtifact", "S3Params", "Pager",
           "DuplicateError"]


def _ms(iso: str | None) -> int | None:
    return None if iso is None else int(_dt.datetime.fromisoformat(iso).timestamp() * 1000)


@dataclasses.dataclass
class RegisteredModel:
    """A registered model. ``description``, ``owner``, ``state`` and ``custom_properties`` can be
    changed and saved with ``ModelRegistry.update``."""

    name: str
    id: str
    description: str | None = None
    owner: str | None = None
    state: str = "LIVE"
    custom_properties: dict = dataclasses.field(default_factory=dict)
    create_time_since_epoch: int | None = None
    last_update_time_since_epoch: int | None = None

    @classmethod
    def _of(cls, model: _CoreModel) -> "RegisteredModel":
        return cls(name=model.name, id=model.id, description=model.description, owner=model.owner, state=model.state,
                   custom_properties=dict(model.metadata), create_time_since_epoch=_ms(model.created_at),
                   last_update_time_since_epoch=_ms(model.updated_at))


@dataclasses.dataclass
class ModelVersion:
    """A version of a model; ``name`` is the version's name. ``description``, ``author``, ``state``
    and ``custom_properties`` can be changed and saved with ``ModelRegistry.update``."""

    name: str
    id: str
    registered_model_id: str
    description: str | None = None
    author: str | None = None
    state: str = "LIVE"
    custom_properties: dict = dataclasses.field(default_factory=dict)
    create_time_since_epoch: int | None = None
    last_update_time_since_epoch: int | None = None

    @classmethod
    def _of(cls, version: _CoreVersion) -> "ModelVersion":
        return cls(name=version.version_name, id=version.id, registered_model_id=version.model_id,
                   description=version.description, author=version.author, state=version.state,
                   custom_properties=dict(version.metadata), create_time_since_epoch=_ms(version.created_at),
                   last_update_time_since_epoch=_ms(version.updated_at))


@dataclasses.dataclass
class ModelArtifact:
    """Where a version's files are and in which format. ``uri``, ``model_format_name``,
    ``model_format_version``, ``storage_key`` and ``storage_path`` can be changed and saved with
    ``ModelRegistry.update`` (not for a version whose files a run holds)."""

    name: str
    id: str
    uri: str | None
    model_format_name: str | None = None
    model_format_version: str | None = None
    storage_key: str | None = None
    storage_path: str | None = None
    description: str | None = None
    state: str = "LIVE"
    registered_model_id: str | None = None
    create_time_since_epoch: int | None = None
    last_update_time_since_epoch: int | None = None

    @classmethod
    def _of(cls, version: _CoreVersion) -> "ModelArtifact":
        return cls(name=version.name, id=version.id, uri=version.uri, model_format_name=version.model_format_name,
                   model_format_version=version.model_format_version, storage_key=version.storage_key,
                   storage_path=version.storage_path, description=version.description, state=version.state,
                   registered_model_id=version.model_id, create_time_since_epoch=_ms(version.created_at),
                   last_update_time_since_epoch=_ms(version.updated_at))


def _default_author() -> str | None:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name in this environment
        return None


class ModelRegistry:
    """The model registry, Kubeflow-client style: see the module docstring.

    ``server_address``: the tracking store to use (``sqlite:///path.db``, ``postgresql://...``;
    ``port`` is put into it when given); ``None`` uses the notebook's store (``podstack.init``).
    ``user_token`` is the API key of a ``podstack server`` (refused by a store that takes none).
    ``artifact_root``: where files uploaded through this registry go (default: the settings').
    ``author`` defaults to this machine's user name; it is the author and owner of what is
    registered through this object unless a call says otherwise.
    """

    def __init__(self, server_address: str | None = None, port: int | None = None, *, author: str | None = None,
                 user_token: str | None = None, artifact_root: str | None = None):
        self._author = author if author is not None else _default_author()
        self._client: ModelRegistryClient | None = None
        if server_address is None:
            if port is not None or user_token is not None:
                raise InvalidArgumentError("port= and user_token= go with server_address= (the store to use)")
            if artifact_root is not None:
                raise InvalidArgumentError("artifact_root= goes with server_address=; without one, the notebook's "
                                           "settings apply (podstack.init(artifact_root=...))")
            return
        from ..artifacts import open_repository
        from ..config import settings
        from ..tracking import TrackingClient, open_store

        url = self._with_port(server_address, port)
        store = open_store(url, api_key=user_token) if user_token is not None else open_store(url)
        root = artifact_root if artifact_root is not None else settings().artifact_url
        self._client = ModelRegistryClient(TrackingClient(store, lambda: open_repository(root)))

    @staticmethod
    def _with_port(url: str, port) -> str:
        if port is None:
            return url
        from sqlalchemy.engine import make_url

        if isinstance(port, bool) or not isinstance(port, int):
            raise InvalidArgumentError(f"port must be an integer, got {port!r}")
        return make_url(url).set(port=port).render_as_string(hide_password=False)

    def __repr__(self):
        return f"ModelRegistry(author={self._author!r}, {self.client.store!r})"

    def close(self) -> None:
        """Close the store this registry opened (``server_address=``); the notebook's stays open."""
        if self._client is not None:
            self._client.store.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def client(self) -> ModelRegistryClient:
        """The :class:`ModelRegistryClient` this face calls."""
        if self._client is not None:
            return self._client
        from .registry import model_client

        return model_client()

    # -- registering -----------------------------------------------------------------------------
    def register_model(self, name: str, uri: str, version: str, model_format_name: str, model_format_version: str,
                       storage_key: str | None = None, storage_path: str | None = None, author: str | None = None,
                       owner: str | None = None, version_description: str | None = None,
                       metadata: dict | None = None) -> RegisteredModel:
        """Register ``uri`` as version ``version`` of ``name`` (created if needed); nothing is
        uploaded. ``DuplicateError`` if the model has a version of that name."""
        self.client.register_model(
            name, uri=uri, version=version, model_format_name=model_format_name,
            model_format_version=model_format_version, storage_key=storage_key, storage_path=storage_path,
            author=author or self._author, owner=owner or self._owner_if_new(name),
            version_description=version_description, metadata=metadata)
        return self.get_registered_model(name)

    def _owner_if_new(self, name) -> str | None:
        # the author owns a model they create; an existing model keeps its owner
        return self._author if self.client.find_registered_model(name) is None else None

    def upload_artifact_and_register_model(self, name: str, model_files_path, upload_params: S3Params, version: str,
                                           model_format_name: str, model_format_version: str,
                                           storage_key: str | None = None, author: str | None = None,
                                           owner: str | None = None, version_description: str | None = None,
                                           metadata: dict | None = None) -> RegisteredModel:
        """Copy a file or folder to ``s3://bucket_name/s3_prefix`` (``upload_params``) and register
        that location as version ``version`` of ``name``. The version name is checked first:
        nothing is uploaded for a name that is taken."""
        self.client.upload_to_s3_and_register(
            name, model_files_path, upload_params, version=version, model_format_name=model_format_name,
            model_format_version=model_format_version, author=author or self._author,
            owner=owner or self._owner_if_new(name), description=version_description, storage_key=storage_key,
            metadata=metadata)
        return self.get_registered_model(name)

    def register_hf_model(self, repo: str, path: str, version: str, model_format_name: str,
                          model_format_version: str, model_name: str | None = None, author: str | None = None,
                          owner: str | None = None, description: str | None = None, git_ref: str = "main",
                          endpoint: str | None = None) -> RegisteredModel:
        """Register ``path`` (a file, or a folder) of the Hugging Face repo ``repo`` at ``git_ref``
        by its hub address, without downloading it. The hub is asked that they exist (offline,
        ``HF_HUB_OFFLINE=1``: the local cache). ``model_name`` defaults to ``repo``, ``author`` to
        the repo's author; ``endpoint`` is another hub (default: ``HF_ENDPOINT``'s)."""
        name = model_name if model_name is not None else repo
        self.client.register_hf_model(repo, path, version=version, model_format_name=model_format_name,
                                      model_format_version=model_format_version, author=author,
                                      owner=owner or self._owner_if_new(name), model_name=name,
                                      description=description, git_ref=git_ref, endpoint=endpoint)
        return self.get_registered_model(name)

    # -- reading ---------------------------------------------------------------------------------
    def get_registered_model(self, name: str) -> RegisteredModel | None:
        """The model, or ``None`` if there is none by that name."""
        found = self.client.find_registered_model(name)
        return None if found is None else RegisteredModel._of(found)

    def get_model_version(self, name: str, version: str) -> ModelVersion | None:
        """The version (by name, or number), or ``None``; ``ModelNotFoundError`` if there is no such model."""
        found = self.client.find_model_version(name, version)
        return None if found is None else ModelVersion._of(found)

    def get_model_artifact(self, name: str, version: str) -> ModelArtifact | None:
        """Where the version's files are, or ``None`` if it has none; ``ModelNotFoundError`` if
        there is no such model or version."""
        found = self.client.find_model_version(name, version)
        if found is None:
            raise ModelNotFoundError(f"model {name!r} has no version {version!r}")
        return None if found.uri is None else ModelArtifact._of(found)

    def get_registered_models(self) -> Pager[RegisteredModel]:
        """Every model, a page at a time (see :class:`Pager`)."""
        return Pager(self.client.page_registered_models, RegisteredModel._of)

    def get_model_versions(self, name: str) -> Pager[ModelVersion]:
        """Every version of a model, a page at a time (``ModelNotFoundError`` if there is no such model)."""
        model = self.client.get_registered_model(name)
        return Pager(lambda **page: self.client.page_model_versions(model.id, **page), ModelVersion._of)

    # -- changing --------------------------------------------------------------------------------
    def update(self, model):
        """Save the changes made to a ``RegisteredModel``, ``ModelVersion`` or ``ModelArtifact``
        got from this registry; returns it as stored now. A change to what cannot change (a name,
        an id) is refused with ``InvalidArgumentError`` and nothing is saved."""
        client = self.client
        if isinstance(model, RegisteredModel):
            stored = RegisteredModel._of(client.get_registered_model(model.id))
            self._refuse_changes(model, stored, ("name", "id"))
            changes = self._changes(model, stored, ("description", "owner", "state", "custom_properties"))
            if "custom_properties" in changes:
                changes["metadata"] = changes.pop("custom_properties")
            return RegisteredModel._of(client.update_registered_model(model.id, **changes))
        if isinstance(model, (ModelVersion, ModelArtifact)):
            core = next((v for v in client.get_registered_model(model.registered_model_id).versions
                         if v.id == model.id), None)
            if core is None:
                raise ModelNotFoundError(f"there is no model version with id {model.id!r} any more")
            if isinstance(model, ModelVersion):
                stored = ModelVersion._of(core)
                self._refuse_changes(model, stored, ("name", "id", "registered_model_id"))
                changes = self._changes(model, stored, ("description", "author", "state", "custom_properties"))
                if "custom_properties" in changes:
                    changes["metadata"] = changes.pop("custom_properties")
                if "state" in changes:
                    state = changes.pop("state")
                    if state not in ("LIVE", "ARCHIVED"):
                        raise InvalidArgumentError(f"state must be 'LIVE' or 'ARCHIVED', got {state!r}")
                    changes["stage"] = "archived" if state == "ARCHIVED" else "development"
                return ModelVersion._of(client.update_model_version(core.model_id, core.version, **changes))
            stored = ModelArtifact._of(core)
            self._refuse_changes(model, stored, ("name", "id", "description", "state", "registered_model_id"))
            changes = self._changes(model, stored, ("uri", "model_format_name", "model_format_version", "storage_key",
                                                    "storage_path"))
            return ModelArtifact._of(client.update_model_version(core.model_id, core.version, **changes))
        raise InvalidArgumentError(f"update takes a RegisteredModel, ModelVersion or ModelArtifact of this registry, "
                                   f"got {type(model).__name__}")

    @staticmethod
    def _changes(edited, stored, fields) -> dict:
        return {f: getattr(edited, f) for f in fields if getattr(edited, f) != getattr(stored, f)}

    @staticmethod
    def _refuse_changes(edited, stored, fields) -> None:
        changed = [f for f in fields if getattr(edited, f) != getattr(stored, f)]
        if changed:
            hint = " (a version's description is the ModelVersion's)" if "description" in changed else ""
            raise InvalidArgumentError(f"update: {', '.join(changed)} of a {type(edited).__name__} cannot be changed"
                                       f"{hint}; nothing was saved")
