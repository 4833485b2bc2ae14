"""Models: the model registry (versions, stages, aliases, lineage), framework-aware serialization
(pytorch, sklearn, huggingface, tensorflow, pickle) and the ``@podstack.model.register`` /
``@podstack.model.promote`` decorators.

:class:`ModelRegistryClient` holds the registry's rules over a tracking client (stateless, by
name or id); :mod:`.registry` is the notebook's half of ``podstack.registry`` over it.
``log_model`` / ``load_model`` use :func:`save_model` and :func:`load_model_from_dir`; a folder
is verified file by file (sha256 recorded in ``podstack_model.json``) before anything in it is
deserialized. This plane uses the tracking plane; tracking never imports it.
"""

from ._decorators import model
from ._flavors import FRAMEWORKS, MANIFEST, detect_framework, load_model_from_dir, read_manifest, save_model
from .client import ModelRegistryClient

__all__ = ["model", "ModelRegistryClient", "FRAMEWORKS", "MANIFEST", "detect_framework", "save_model",
           "load_model_from_dir", "read_manifest"]
