"""The compute plane: GPU sessions that run notebook cells and functions remotely.

Public face: :class:`gpu` (decorator / context manager), :func:`run_on_gpu`,
:class:`GPUSpec`, and ``sessions`` (the notebook's live sessions).
"""

from .api import GPURunResult, current_spec, gpu, run_on_gpu
from .runner import RemoteResult, run_cell
from .session import GPUSession, SessionManager, sessions
from .spec import ENV_PRESETS, GPU_TYPES, GPUSpec

__all__ = ["gpu", "run_on_gpu", "GPURunResult", "GPUSpec", "GPU_TYPES", "ENV_PRESETS", "sessions",
           "GPUSession", "SessionManager", "run_cell", "RemoteResult", "current_spec"]
