"""Models: framework-aware serialization (pytorch, sklearn, huggingface, tensorflow, pickle)
and the ``@podstack.model.register`` / ``@podstack.model.promote`` decorators.

``registry.log_model`` / ``registry.load_model`` use :func:`save_model` and
:func:`load_model_from_dir`; a loaded folder is verified file by file first.
"""

from ._decorators import model
from ._flavors import FRAMEWORKS, MANIFEST, detect_framework, load_model_from_dir, save_model

__all__ = ["model", "FRAMEWORKS", "MANIFEST", "detect_framework", "save_model", "load_model_from_dir"]
