"""Serialize models to a folder and back, per framework, with a verified manifest.

Every saved folder holds ``podstack_model.json``: the framework, the model's class, the
library and Python versions, when it was written, and the sha256 and size of every file.
Loading checks every file against the manifest *before* deserializing anything:
unpickling is code execution, so a tampered or corrupted file is refused, never run.
The manifest itself is signed with a key that never leaves this machine
(:mod:`._signing`): formats whose loading runs code (``pickle``, ``sklearn``, a whole
``pytorch`` module, TorchScript) are loaded only from a manifest signed here, so rows,
blobs and a manifest written into the store by anyone else are refused, not run.
``load_model_from_dir(..., trusted=True)`` (and ``registry.load_model(..., trusted=True)``)
loads an unsigned or foreign-signed model whose origin you trust. Weights-only formats
(a torch state_dict, safetensors, Keras in safe mode) need no signature.

What each framework writes:

``pytorch``
    ``model.pt``: the ``state_dict`` (tensors only; loadable with
    ``torch.load(..., weights_only=True)`` into a module your code builds) and ``module.pt``:
    the whole module, pickled, so ``load_model`` can rebuild it without your code. The
    trade-off: the pickled module refers to its class by import path (classes defined in a
    notebook travel by value), so it needs that code importable and a compatible torch to
    load; the state_dict is the portable copy. A bare state_dict is saved as ``model.pt``
    alone and loaded back as a dict; a TorchScript module goes through ``torch.jit``.
``sklearn``
    ``model.pkl`` (cloudpickle); load it with a compatible scikit-learn.
``huggingface``
    ``save_pretrained`` (config.json, model.safetensors, ...) plus the tokenizer's files when
    given ``(model, tokenizer)`` or ``{"model": m, "tokenizer": t}``; loaded offline from the
    folder with the architecture recorded in config.json, in the shape it was given.
``tensorflow``
    ``model.keras`` (Keras 3 / ``tf.keras``), loaded with ``keras.models.load_model`` in safe
    mode. The Keras backend used to save is recorded and used to load when Keras is not
    imported yet and ``KERAS_BACKEND`` is unset.
``pickle``
    ``model.pkl`` (cloudpickle): any other picklable object.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import platform
import shutil
import sys
from pathlib import Path, PurePosixPath

import cloudpickle

from ..errors import ArtifactIntegrityError, ArtifactNotFoundError, InvalidArgumentError, PodstackError, SerializationError
from . import _signing

__all__ = ["FRAMEWORKS", "MANIFEST", "detect_framework", "save_model", "load_model_from_dir", "read_manifest",
           "sign_folder", "runs_code"]

FRAMEWORKS = ("pytorch", "tensorflow", "sklearn", "huggingface", "pickle")
MANIFEST = "podstack_model.json"
_FORMAT_VERSION = 1

# the libraries whose versions matter to load a framework's files again
_LIBRARIES = {
    "pytorch": ("torch",),
    "tensorflow": ("keras", "tensorflow", "torch", "jax"),
    "sklearn": ("sklearn", "numpy", "scipy", "cloudpickle"),
    "huggingface": ("transformers", "torch", "safetensors", "tokenizers"),
    "pickle": ("cloudpickle",),
}
_MAIN_LIBRARY = {"pytorch": "torch", "tensorflow": "keras", "sklearn": "sklearn", "huggingface": "transformers",
                 "pickle": "cloudpickle"}


# -- detection -----------------------------------------------------------------------------------
def _class_in(module: str, path: str):
    """The class ``module.path`` if that library is already imported, else ``None`` (never imports it:
    a model of a library that is not loaded cannot exist in this process)."""
    target = sys.modules.get(module)
    for part in path.split("."):
        if target is None:
            return None
        try:
            target = getattr(target, part, None)
        except Exception:  # noqa: BLE001 - a lazy module attribute that fails to load is "not there"
            return None
    return target if isinstance(target, type) else None


def _is_instance(model, *candidates: tuple[str, str]) -> bool:
    return any((cls := _class_in(module, path)) is not None and isinstance(model, cls) for module, path in candidates)


def _is_hf_model(obj) -> bool:
    return _is_instance(obj, ("transformers", "PreTrainedModel"), ("transformers", "TFPreTrainedModel"),
                        ("transformers", "FlaxPreTrainedModel"))


def _is_keras_model(obj) -> bool:
    return _is_instance(obj, ("keras", "Model"), ("tf_keras", "Model"), ("tensorflow", "keras.Model"))


def _is_state_dict(obj) -> bool:
    return (isinstance(obj, dict) and bool(obj) and all(isinstance(k, str) for k in obj)
            and all(_is_instance(v, ("torch", "Tensor")) for v in obj.values()))


def _hf_parts(model):
    """``(model, tokenizer, container)`` for a model, a ``(model, tokenizer)`` pair or a dict."""
    if isinstance(model, tuple) and len(model) == 2 and _is_hf_model(model[0]):
        return model[0], model[1], "tuple"
    if isinstance(model, dict) and _is_hf_model(model.get("model")):
        return model["model"], model.get("tokenizer"), "dict"
    return model, None, None


def detect_framework(model) -> str:
    """The framework ``save_model`` would use for ``model``.

    ``"huggingface"`` (a transformers model, alone or as ``(model, tokenizer)`` /
    ``{"model": ..., "tokenizer": ...}``), ``"tensorflow"`` (a Keras model, whatever its
    backend), ``"pytorch"`` (a ``torch.nn.Module`` or a state_dict of tensors),
    ``"sklearn"`` (a scikit-learn estimator) or ``"pickle"`` (anything else). Detection
    looks only at libraries already imported; it never imports a framework.
    """
    core, _, _ = _hf_parts(model)
    if _is_hf_model(core):
        return "huggingface"
    if _is_keras_model(model):  # before torch: a Keras model on the torch backend is also an nn.Module
        return "tensorflow"
    if _is_instance(model, ("torch", "nn.Module")) or _is_state_dict(model):
        return "pytorch"
    if _is_instance(model, ("sklearn", "base.BaseEstimator")):
        return "sklearn"
    return "pickle"


def _check_framework(framework) -> str:
    if framework not in FRAMEWORKS:
        raise InvalidArgumentError(f"unknown framework {framework!r}; valid frameworks are: {', '.join(FRAMEWORKS)} "
                                   "(or None to detect it)")
    return framework


def _check_fits(model, framework: str) -> None:
    """Refuse a model the chosen framework cannot write, before anything is written."""
    problem = None
    if framework == "pytorch" and not (_is_instance(model, ("torch", "nn.Module")) or _is_state_dict(model)):
        problem = "a torch.nn.Module or a state_dict (a dict of tensors)"
    elif framework == "huggingface" and not callable(getattr(_hf_parts(model)[0], "save_pretrained", None)):
        problem = "a transformers model (or a (model, tokenizer) pair) with save_pretrained()"
    elif framework == "tensorflow" and not _is_keras_model(model):
        problem = "a Keras model (keras.Model / tf.keras.Model)"
    if problem:
        raise InvalidArgumentError(
            f"framework={framework!r} needs {problem}; got {_class_path(model)} "
            f"(detected framework: {detect_framework(model)!r}). Pass that framework, or framework=None.")


# -- manifest and files --------------------------------------------------------------------------
def _class_path(obj) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _library_version(name: str) -> str | None:
    module = sys.modules.get(name)
    version = getattr(module, "__version__", None) if module is not None else None
    if version is None:
        from importlib import metadata

        try:
            version = metadata.version({"sklearn": "scikit-learn"}.get(name, name))
        except metadata.PackageNotFoundError:
            return None
    return str(version)


def _folder_arg(directory, what: str) -> Path:
    if not isinstance(directory, (str, os.PathLike)):
        raise InvalidArgumentError(f"{what}: directory must be a folder path, got {type(directory).__name__}")
    return Path(directory)


def _listed_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.relative_to(folder).as_posix() != MANIFEST)


def read_manifest(directory) -> dict:
    """The manifest of a folder written by ``save_model`` (not verified; ``load_model_from_dir`` verifies)."""
    folder = _folder_arg(directory, "read_manifest")
    if not folder.is_dir():
        raise ArtifactNotFoundError(f"model folder {str(folder)!r} does not exist")
    path = folder / MANIFEST
    if not path.is_file():
        found = [p.relative_to(folder).as_posix() for p in _listed_files(folder)][:10]
        raise InvalidArgumentError(
            f"{folder} holds no {MANIFEST}, so it was not written by save_model() / registry.log_model() "
            f"(files there: {found}). podstack loads only models it saved, because it checks every file "
            "before deserializing it; load these files with their own library.")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        files = manifest["files"]
        framework = manifest["framework"]
        if isinstance(files, dict):  # early manifests recorded {name: sha256}
            files = manifest["files"] = {k: {"sha256": v} if isinstance(v, str) else v for k, v in files.items()}
        ok = isinstance(files, dict) and isinstance(framework, str) and all(
            isinstance(v, dict) and isinstance(v.get("sha256"), str) for v in files.values())
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        ok = False
    if not ok:
        raise ArtifactIntegrityError(f"{path} is damaged (not a podstack model manifest); save the model again")
    for name in files:
        pure = PurePosixPath(name)
        if pure.is_absolute() or ".." in pure.parts or not name or "\\" in name:
            raise ArtifactIntegrityError(f"{path} lists {name!r}, a path outside the model folder; refusing to load")
    return manifest


def _verify(folder: Path, manifest: dict) -> None:
    files = manifest["files"]
    for name, entry in files.items():
        path = folder / name
        if not path.is_file():
            raise ArtifactIntegrityError(f"model file {name!r} listed in {MANIFEST} is missing from {folder}")
        if ("size" in entry and path.stat().st_size != entry["size"]) or _sha256(path) != entry["sha256"]:
            raise ArtifactIntegrityError(
                f"model file {name!r} in {folder} does not match the sha256 recorded when it was saved; refusing "
                "to load it (deserializing a tampered file can run arbitrary code). Log the model again.")
    extra = [p.relative_to(folder).as_posix() for p in _listed_files(folder)
             if p.relative_to(folder).as_posix() not in files and not p.name.startswith(".")]
    if extra:
        raise ArtifactIntegrityError(
            f"{folder} holds file(s) not recorded in {MANIFEST}: {extra[:10]}; refusing to load (a library could "
            "read them instead of the verified files). Remove them or save the model again.")


# -- public --------------------------------------------------------------------------------------
def save_model(model, directory, framework: str | None = None) -> str:
    """Write ``model`` into ``directory`` (a new or empty folder) and return the framework used.

    ``framework``: ``"pytorch"``, ``"tensorflow"``, ``"sklearn"``, ``"huggingface"`` or
    ``"pickle"``; ``None`` detects it (:func:`detect_framework`). Besides the model's files
    the folder gets ``podstack_model.json`` (framework, class, library versions, sha256 of
    every file). If serialization fails, nothing is left in the folder and
    ``SerializationError`` says why.
    """
    folder = _folder_arg(directory, "save_model")
    if framework is None:
        framework = detect_framework(model)
    else:
        _check_fits(model, _check_framework(framework))
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise InvalidArgumentError(f"save_model: {str(folder)!r} is not an empty folder; save into a new or empty one")
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        details = _SAVERS[framework](model, folder)
        files = {p.relative_to(folder).as_posix(): {"sha256": _sha256(p), "size": p.stat().st_size}
                 for p in _listed_files(folder)}
        core = _hf_parts(model)[0] if framework == "huggingface" else model
        from .. import __version__ as podstack_version

        manifest = {
            "format_version": _FORMAT_VERSION, "framework": framework, "class": _class_path(core),
            "library": _MAIN_LIBRARY[framework], "library_version": _library_version(_MAIN_LIBRARY[framework]),
            "libraries": {name: v for name in _LIBRARIES[framework]
                          if name in sys.modules and (v := _library_version(name)) is not None},
            "python": platform.python_version(), "podstack": podstack_version,
            "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(), "files": files, **details,
        }
        if _signing.can_sign():  # in a GPU session the notebook signs it when the files reach it
            manifest = _signing.sign(manifest)
        _write_manifest(folder, manifest)
    except BaseException as exc:
        if created:
            shutil.rmtree(folder, ignore_errors=True)
        else:
            for child in list(folder.iterdir()):
                shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
        if isinstance(exc, (PodstackError, KeyboardInterrupt, SystemExit, GeneratorExit)) or not isinstance(exc, Exception):
            raise
        raise SerializationError(
            f"cannot save {_class_path(model)} as {framework!r}: {type(exc).__name__}: {exc}. "
            f"Nothing was written to {folder}." + (
                " Objects holding open files, locks, sockets or generators cannot be pickled; "
                "save the parts that can be." if framework in ("pickle", "sklearn") else ""),
            type_name=_class_path(model)) from exc
    return framework


def _write_manifest(folder: Path, manifest: dict) -> None:
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True), encoding="utf-8")


def sign_folder(directory) -> dict:
    """Check every file of a saved model folder against its manifest, then sign the manifest with
    this machine's key (what the notebook does to a model a GPU session logs). Returns it."""
    folder = _folder_arg(directory, "sign_folder")
    manifest = read_manifest(folder)
    _verify(folder, manifest)
    manifest = _signing.sign(manifest)
    _write_manifest(folder, manifest)
    return manifest


def runs_code(framework: str, manifest: dict) -> bool:
    """Whether loading a folder saved as ``manifest`` with ``framework`` unpickles (runs) code."""
    if framework in ("pickle", "sklearn"):
        return True
    if framework == "pytorch":
        return manifest.get("pytorch_format") == "torchscript" or "module.pt" in manifest["files"]
    return False


def load_model_from_dir(directory, framework: str | None = None, *, trusted: bool = False):
    """Load what :func:`save_model` wrote into ``directory``.

    Every file is first checked against the sha256 recorded in ``podstack_model.json``
    (``ArtifactIntegrityError`` on a mismatch, a missing file or an unrecorded one), and
    only then deserialized with the recorded framework, or ``framework`` if given (it must
    be able to read the files saved: ``"pickle"`` and ``"sklearn"`` are interchangeable).
    A format whose loading runs code (pickle, sklearn, a whole torch module, TorchScript) is
    loaded only if the manifest carries a valid signature of this machine's key (see
    :mod:`podstack_jupyter.models._signing`); ``trusted=True`` loads it without one, for a
    model whose origin you trust (saved on another machine, by a colleague). Returns the model;
    a Hugging Face model saved with a tokenizer comes back in the same shape it was given,
    ``(model, tokenizer)`` or ``{"model": ..., "tokenizer": ...}``.
    """
    folder = _folder_arg(directory, "load_model_from_dir")
    if framework is not None:
        _check_framework(framework)
    if not isinstance(trusted, bool):
        raise InvalidArgumentError(f"trusted must be True or False, got {trusted!r}")
    manifest = read_manifest(folder)
    _verify(folder, manifest)
    recorded = manifest["framework"]
    chosen = framework or recorded
    if chosen not in FRAMEWORKS:
        raise InvalidArgumentError(f"{folder} was saved with framework {recorded!r}, which this version of podstack "
                                   f"cannot load; valid frameworks are: {', '.join(FRAMEWORKS)}")
    needs = _NEEDS[chosen]
    if not any(name in manifest["files"] for name in needs):
        raise InvalidArgumentError(
            f"the model in {folder} was saved as {recorded!r} (files: {sorted(manifest['files'])}); it cannot be loaded "
            f"as {chosen!r}, which reads {' or '.join(needs)}. Leave framework unset to use {recorded!r}.")
    if not trusted and runs_code(chosen, manifest):
        problem = _signing.signature_problem(manifest)
        if problem is not None:
            raise ArtifactIntegrityError(
                f"refusing to load the {chosen!r} model in {folder}: loading it runs code (unpickling), and its "
                f"manifest is not signed by this machine's podstack key: {problem}. Models saved or logged here are "
                "signed; this one was written elsewhere, or the store was changed. If you trust where it came from, "
                "load it with load_model(..., trusted=True) (load_model_from_dir(..., trusted=True)).")
    return _LOADERS[chosen](folder, manifest)


# -- per framework -------------------------------------------------------------------------------
def _save_pickle(model, folder: Path) -> dict:
    with open(folder / "model.pkl", "wb") as f:
        cloudpickle.dump(model, f, protocol=5)
    return {}


def _load_pickle(folder: Path, manifest: dict):
    # verified against the manifest by load_model_from_dir: this is the file save_model wrote
    with open(folder / "model.pkl", "rb") as f:
        return cloudpickle.load(f)


def _save_pytorch(model, folder: Path) -> dict:
    import torch

    if isinstance(model, dict):  # a bare state_dict: tensors only, loadable without pickled code
        torch.save(model, folder / "model.pt")
        return {"pytorch_format": "state_dict"}
    if isinstance(model, torch.jit.ScriptModule):
        torch.jit.save(model, str(folder / "module.pt"))
        torch.save(model.state_dict(), folder / "model.pt")
        return {"pytorch_format": "torchscript"}
    # portable weights, plus the whole module (classes defined in a notebook pickled by value) to rebuild it
    torch.save(model.state_dict(), folder / "model.pt")
    torch.save(model, folder / "module.pt", pickle_module=cloudpickle)
    return {"pytorch_format": "module"}


def _load_pytorch(folder: Path, manifest: dict):
    import torch

    if manifest.get("pytorch_format") == "torchscript":
        return torch.jit.load(str(folder / "module.pt"), map_location="cpu")
    if "module.pt" in manifest["files"]:
        # verified against the manifest: the pickled module is the one save_model wrote
        return torch.load(folder / "module.pt", map_location="cpu", weights_only=False)
    return torch.load(folder / "model.pt", map_location="cpu", weights_only=True)


def _save_huggingface(model, folder: Path) -> dict:
    core, tokenizer, container = _hf_parts(model)
    core.save_pretrained(folder)
    details = {"architecture": type(core).__name__, "container": container, "tokenizer": None}
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)
        details["tokenizer"] = type(tokenizer).__name__
    return details


def _load_huggingface(folder: Path, manifest: dict):
    import transformers

    config = transformers.AutoConfig.from_pretrained(folder, local_files_only=True)
    architecture = (config.architectures or [None])[0] or manifest.get("architecture")
    cls = getattr(transformers, architecture, None) if architecture else None
    if not (isinstance(cls, type) and hasattr(cls, "from_pretrained")):
        cls = transformers.AutoModel
    model = cls.from_pretrained(folder, local_files_only=True)
    tokenizer_class = manifest.get("tokenizer")
    if not tokenizer_class:
        return model
    tok_cls = getattr(transformers, tokenizer_class, None)
    if not (isinstance(tok_cls, type) and hasattr(tok_cls, "from_pretrained")):
        tok_cls = transformers.AutoTokenizer
    tokenizer = tok_cls.from_pretrained(folder, local_files_only=True)
    if manifest.get("container") == "dict":
        return {"model": model, "tokenizer": tokenizer}
    return model, tokenizer


def _save_tensorflow(model, folder: Path) -> dict:
    model.save(folder / "model.keras")
    backend = None
    keras = sys.modules.get("keras")
    if keras is not None and hasattr(getattr(keras, "backend", None), "backend"):
        backend = keras.backend.backend()
    return {"keras_backend": backend}


def _load_tensorflow(folder: Path, manifest: dict):
    backend = manifest.get("keras_backend")
    if backend and "keras" not in sys.modules and not os.environ.get("KERAS_BACKEND"):
        os.environ["KERAS_BACKEND"] = backend  # Keras reads it once, at import
    try:
        import keras
    except ImportError:
        from tensorflow import keras
    # safe_mode (the default) refuses to deserialize arbitrary lambdas
    return keras.models.load_model(folder / "model.keras")


_SAVERS = {"pytorch": _save_pytorch, "tensorflow": _save_tensorflow, "sklearn": _save_pickle,
           "huggingface": _save_huggingface, "pickle": _save_pickle}
_LOADERS = {"pytorch": _load_pytorch, "tensorflow": _load_tensorflow, "sklearn": _load_pickle,
            "huggingface": _load_huggingface, "pickle": _load_pickle}
# the file a loader reads; loading with another framework than the recorded one needs it present
_NEEDS = {"pytorch": ("module.pt", "model.pt"), "tensorflow": ("model.keras",), "sklearn": ("model.pkl",),
          "huggingface": ("config.json",), "pickle": ("model.pkl",)}
