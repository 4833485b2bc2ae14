"""Serialize models to a folder and back, per framework, with a verified manifest.

Every saved folder holds ``podstack_model.json``: the framework, the class, the
library and Python versions, and the sha256 of every file. Loading checks every
file against the manifest *before* deserializing anything: unpickling is code
execution, so a tampered or corrupted file is refused, never run.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import platform
import sys
from pathlib import Path

import cloudpickle

from ..errors import ArtifactIntegrityError, InvalidArgumentError

__all__ = ["FRAMEWORKS", "MANIFEST", "detect_framework", "save_model", "load_model_from_dir"]

FRAMEWORKS = ("pytorch", "tensorflow", "sklearn", "huggingface", "pickle")
MANIFEST = "podstack_model.json"


def _is_instance(model, module: str, path: str) -> bool:
    """isinstance against ``module.path`` only if that library is already imported (never import it)."""
    lib = sys.modules.get(module)
    if lib is None:
        return False
    target = lib
    for part in path.split("."):
        target = getattr(target, part, None)
        if target is None:
            return False
    return isinstance(model, target)


def _hf_parts(model):
    """``(model, tokenizer)`` when ``model`` is a transformers model, a (model, tokenizer) pair or a dict."""
    if isinstance(model, tuple) and len(model) == 2:
        return model
    if isinstance(model, dict) and "model" in model:
        return model["model"], model.get("tokenizer")
    return model, None


def detect_framework(model) -> str:
    """``"huggingface"``, ``"pytorch"``, ``"tensorflow"``, ``"sklearn"`` or ``"pickle"`` (anything else)."""
    core, _ = _hf_parts(model)
    if _is_instance(core, "transformers", "PreTrainedModel") or _is_instance(core, "transformers", "TFPreTrainedModel"):
        return "huggingface"
    if _is_instance(model, "torch", "nn.Module"):
        return "pytorch"
    if isinstance(model, dict) and model and all(_is_instance(v, "torch", "Tensor") for v in model.values()):
        return "pytorch"  # a state_dict
    if _is_instance(model, "keras", "Model") or _is_instance(model, "tensorflow", "keras.Model"):
        return "tensorflow"
    if _is_instance(model, "sklearn", "base.BaseEstimator"):
        return "sklearn"
    return "pickle"


def _check_framework(framework: str) -> str:
    if framework not in FRAMEWORKS:
        raise InvalidArgumentError(f"unknown framework {framework!r}; valid frameworks are: {', '.join(FRAMEWORKS)}")
    return framework


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _version(module: str) -> str | None:
    lib = sys.modules.get(module)
    return getattr(lib, "__version__", None) if lib is not None else None


def save_model(model, directory, framework: str | None = None) -> str:
    """Write ``model`` into ``directory`` (created) and return the framework used."""
    framework = _check_framework(framework or detect_framework(model))
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    library = {"pytorch": "torch", "tensorflow": "tensorflow", "sklearn": "sklearn",
               "huggingface": "transformers", "pickle": "cloudpickle"}[framework]
    details = _SAVERS[framework](model, folder)
    core, _ = _hf_parts(model) if framework == "huggingface" else (model, None)
    files = {p.relative_to(folder).as_posix(): _sha256(p) for p in sorted(folder.rglob("*"))
             if p.is_file() and p.name != MANIFEST}
    manifest = {
        "framework": framework, "class": f"{type(core).__module__}.{type(core).__qualname__}",
        "library": library, "library_version": _version(library), "python": platform.python_version(),
        "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(), "files": files, **details,
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return framework


def load_model_from_dir(directory, framework: str | None = None):
    """Load what ``save_model`` wrote, after checking every file's sha256 against the manifest."""
    folder = Path(directory)
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise ArtifactIntegrityError(f"{folder} has no {MANIFEST}: it was not written by podstack's log_model")
    manifest = json.loads(manifest_path.read_text())
    for name, digest in manifest["files"].items():
        path = folder / name
        if not path.is_file():
            raise ArtifactIntegrityError(f"model file {name} listed in the manifest is missing from {folder}")
        if _sha256(path) != digest:
            raise ArtifactIntegrityError(
                f"model file {name} does not match its recorded sha256; refusing to load it "
                f"(loading a tampered pickle would run its code)")
    framework = _check_framework(framework or manifest["framework"])
    return _LOADERS[framework](folder, manifest)


# -- per framework ---------------------------------------------------------------------------------
def _save_pickle(model, folder: Path) -> dict:
    with open(folder / "model.pkl", "wb") as f:
        cloudpickle.dump(model, f, protocol=5)
    return {}


def _load_pickle(folder: Path, manifest: dict):
    with open(folder / "model.pkl", "rb") as f:
        return cloudpickle.load(f)


def _save_pytorch(model, folder: Path) -> dict:
    import torch

    if isinstance(model, dict):  # a bare state_dict: tensors only, loadable without pickled code
        torch.save(model, folder / "state_dict.pt")
        return {"pytorch_format": "state_dict"}
    # state_dict for portable weights; the whole module (pickled by reference to its class) to rebuild it
    torch.save(model.state_dict(), folder / "state_dict.pt")
    torch.save(model, folder / "model.pt", pickle_module=cloudpickle)
    return {"pytorch_format": "module"}


def _load_pytorch(folder: Path, manifest: dict):
    import torch

    if manifest.get("pytorch_format") == "state_dict":
        return torch.load(folder / "state_dict.pt", map_location="cpu", weights_only=True)
    # the digests were verified: the pickled module is the one log_model wrote
    return torch.load(folder / "model.pt", map_location="cpu", weights_only=False)


def _save_sklearn(model, folder: Path) -> dict:
    return _save_pickle(model, folder)


def _load_sklearn(folder: Path, manifest: dict):
    return _load_pickle(folder, manifest)


def _save_huggingface(model, folder: Path) -> dict:
    core, tokenizer = _hf_parts(model)
    core.save_pretrained(folder)
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)
    return {"tokenizer": tokenizer is not None}


def _load_huggingface(folder: Path, manifest: dict):
    import transformers

    config = transformers.AutoConfig.from_pretrained(folder, local_files_only=True)
    architecture = (config.architectures or [None])[0]
    cls = getattr(transformers, architecture, None) if architecture else None
    if cls is None:
        cls = transformers.AutoModel
    model = cls.from_pretrained(folder, local_files_only=True)
    if manifest.get("tokenizer"):
        return model, transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
    return model


def _save_tensorflow(model, folder: Path) -> dict:
    model.save(folder / "model.keras")
    return {}


def _load_tensorflow(folder: Path, manifest: dict):
    import keras

    return keras.models.load_model(folder / "model.keras")


_SAVERS = {"pytorch": _save_pytorch, "tensorflow": _save_tensorflow, "sklearn": _save_sklearn,
           "huggingface": _save_huggingface, "pickle": _save_pickle}
_LOADERS = {"pytorch": _load_pytorch, "tensorflow": _load_tensorflow, "sklearn": _load_sklearn,
            "huggingface": _load_huggingface, "pickle": _load_pickle}
