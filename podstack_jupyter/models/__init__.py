"""Models: framework-aware serialization (pytorch, sklearn, huggingface, tensorflow, pickle)
and the ``@podstack.model.register`` / ``@podstack.model.promote`` decorators.

``registry.log_model`` / ``registry.load_model`` use :func:`save_model` and
:func:`load_model_from_dir`; a folder is verified file by file (sha256 recorded in
``podstack_model.json``) before anything in it is deserialized.
"""

from ._decorators import model
from ._flavors import FRAMEWORKS, MANIFEST, detect_framework, load_model_from_dir, read_manifest, save_model

__all__ = ["model", "FRAMEWORKS", "MANIFEST", "detect_framework", "save_model", "load_model_from_dir",
           "read_manifest"]
