"""``import podstack`` / ``%load_ext podstack``: a thin alias of :mod:`podstack_jupyter`.

``podstack.X`` is the very module ``podstack_jupyter.X`` (``import podstack.registry``,
``from podstack.registry import log_metrics``, ``import podstack.artifacts``): without the finder
below, Python would load a second copy of the file under the alias name, with state of its own
(settings, active runs) and exception classes of its own.
"""
import importlib
import importlib.abc
import importlib.util
import sys

import podstack_jupyter


class _AliasFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path=None, target=None):
        if name.startswith("podstack."):
            return importlib.util.spec_from_loader(name, self)
        return None

    def create_module(self, spec):
        module = importlib.import_module("podstack_jupyter" + spec.name[len("podstack"):])
        spec.loader_state = module.__spec__
        return module

    def exec_module(self, module):
        module.__spec__ = module.__spec__.loader_state  # the import system stamped the alias spec on it


if not any(type(f).__name__ == "_AliasFinder" for f in sys.meta_path):
    sys.meta_path.insert(0, _AliasFinder())
sys.modules[__name__] = podstack_jupyter
