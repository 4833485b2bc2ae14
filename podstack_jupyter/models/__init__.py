"""Models: the model registry (versions, stages, aliases, lineage, latest, files anywhere),
framework-aware serialization (pytorch, sklearn, huggingface, tensorflow, pickle) and the
``@podstack.model.register`` / ``@podstack.model.promote`` decorators.

:class:`ModelRegistryClient` holds the registry's rules over a tracking client (stateless, by
name or id; the rules on names and values are in :mod:`._rules`). Three faces call it, each in
the idiom its users know:

- :mod:`.registry`: the notebook's half of ``podstack.registry`` (the Podstack SDK, seed 000);
- :class:`ModelRegistry` (:mod:`.kubeflow`): the Kubeflow Model Registry client's idiom (seed 002),
  with :class:`S3Params` and :class:`Pager`;
- :class:`ModelManager` (:mod:`.manager`): aipmodel's ``MLOpsManager`` idiom (seed 004).

``log_model`` / ``load_model`` use :func:`save_model` and :func:`load_model_from_dir`; a folder
is verified file by file (sha256 recorded in ``podstack_model.json``) before anything in it is
deserialized. This plane uses the tracking plane; tracking never imports it.
"""

from ._decorators import model
from ._flavors import FRAMEWORKS, MANIFEST, detect_framework, load_model_from_dir, read_manifest, save_model
from ._rules import MODEL_CATEGORIES, RESERVED_MODEL_PREFIXES
from .client import ModelRegistryClient

__all__ = ["model", "ModelRegistryClient", "ModelRegistry", "ModelManager", "S3Params", "Pager", "FRAMEWORKS",
           "MANIFEST", "MODEL_CATEGORIES", "RESERVED_MODEL_PREFIXES", "detect_framework", "save_model",
           "load_model_from_dir", "read_manifest"]

# the faces of seeds 002 and 004, imported on first use
_LAZY = {"ModelRegistry": ".kubeflow", "S3Params": "._sources", "Pager": "._pager", "ModelManager": ".manager"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
