"""``import podstack`` / ``%load_ext podstack``: a thin alias of :mod:`podstack_jupyter`.

``import podstack.artifacts`` (and any ``podstack.X``) gives the very module
``podstack_jupyter.X``: without the finder below Python would load a second copy under the
alias, with its own state and its own exception classes.
"""
import importlib
import importlib.abc
import importlib.util
import sys

import podstack_jupyter


class _AliasFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path, target=None):
        if fullname.startswith("podstack."):
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        return importlib.import_module("podstack_jupyter" + spec.name[len("podstack"):])

    def exec_module(self, module):
        pass


if not any(isinstance(f, _AliasFinder) for f in sys.meta_path):
    sys.meta_path.insert(0, _AliasFinder())
sys.modules[__name__] = podstack_jupyter
