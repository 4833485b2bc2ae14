"""The JupyterLab side of podstack: the Jupyter server extension that feeds the lab extension's
sidebar, and the notebook kernel's half of it.

Installed with the package (``pip install podstack-jupyter``): the wheel carries the prebuilt lab
extension (``share/jupyter/labextensions/podstack-jupyterlab``) and enables the server extension
(``etc/jupyter/jupyter_server_config.d/podstack_jupyter.json``). ``jupyter labextension list``
and ``jupyter server extension list`` show both.

Two sources, because the data lives in two processes:

* the **server extension** (:class:`PodstackLabApp`, URL prefix ``/podstack-lab/api``) reads runs,
  metric histories and registered models from the configured store through
  :mod:`podstack_jupyter.registry`, every handler authenticated;
* the **kernel bridge** (:func:`attach`, run by ``%load_ext podstack``) tells the sidebar and the
  status bar what the notebook's kernel holds: its GPU sessions (``podstack_jupyter.compute``),
  its current ``%%track`` run and when runs, metrics or models changed (``podstack_jupyter.events``),
  over a comm named ``podstack.lab``; the sidebar's Stop and Restart buttons come back the same way.
"""

from __future__ import annotations

__all__ = ["PodstackLabApp", "attach", "detach", "COMM_TARGET", "URL_PREFIX"]

COMM_TARGET = "podstack.lab"
URL_PREFIX = "podstack-lab"


def __getattr__(name):
    if name == "PodstackLabApp":
        from ._app import PodstackLabApp

        return PodstackLabApp
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _jupyter_server_extension_points():
    from ._app import PodstackLabApp

    return [{"module": "podstack_jupyter.jupyter_ext", "app": PodstackLabApp}]


def attach(shell) -> None:
    """Start the kernel bridge in this IPython kernel (``%load_ext podstack`` calls it; it does
    nothing outside a kernel, e.g. in a terminal IPython)."""
    from . import _kernel

    _kernel.attach(shell)


def detach(shell) -> None:
    """Stop the kernel bridge (``%unload_ext podstack``)."""
    from . import _kernel

    _kernel.detach(shell)
