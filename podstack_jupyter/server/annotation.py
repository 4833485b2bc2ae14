"""The ``#@podstack`` line of code submitted to ``POST /api/v1/executions/submit``, as a :class:`GPUSpec`.

The official Podstack SDK puts every GPU option of ``run_on_gpu`` / ``@podstack.gpu`` into one
comment line of the code it submits::

    #@podstack gpu=L40S count=2 fraction=50 timeout=600 env=nlp pip=transformers,datasets use_uv=true

``count`` (1), ``fraction`` (100) and ``timeout`` (3600 s) are left out at their defaults. The line is
not always the first: ``env_vars`` assignments and the SDK's package-install preamble come before
it, so the first line that starts with ``#@podstack`` is the one. Code without such a line runs on
any free GPU, else the CPU, with the defaults.

What this server does with each key:

* ``gpu``, ``count``, ``fraction``, ``timeout``, ``env``: the session's spec (``gpu=any``: any free
  GPU, else the CPU);
* ``pip``, ``uv``: packages of the session's environment (built once and cached by the backend;
  the SDK's own install preamble then finds them installed); ``use_uv``: build it with uv;
* ``requirements``: the requirements file's text, which the SDK embeds in the code it sends
  (``_requirements = \"\"\"...\"\"\"``), becomes part of the environment too;
* ``conda``: served by backends that build conda environments (the local one refuses it);
* ``runner``, ``nfs``, ``buckets``: runner images and mounts of Podstack's cloud, which this server
  does not have: refused, rather than running the code somewhere it did not ask for.

Anything else (an unknown key, a count that is not a number, a key given twice) is refused with
an :class:`~podstack_jupyter.errors.InvalidArgumentError` naming the key.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import os
import tempfile
from pathlib import Path

from ..compute import GPUSpec
from ..errors import InvalidArgumentError

__all__ = ["MARK", "Annotation", "parse_annotation", "find_annotation_line"]

MARK = "#@podstack"
KNOWN_KEYS = ("gpu", "count", "fraction", "timeout", "env", "pip", "uv", "conda", "requirements", "use_uv",
              "runner", "nfs", "buckets")
_ANY_GPU = frozenset({"any", "auto", "none"})
# the SDK's GPUType names that podstack's own types spell differently
_SDK_TYPES = {"H100_80GB": "H100", "H100-80GB": "H100", "A100_40GB": "A100-40G", "A100_80GB": "A100-80G"}
_UNSERVED = {
    "runner": "runner images are part of Podstack's cloud; this server runs the code in its backend's own "
              "environment: drop runner= (and @podstack.runner) and name packages with pip= or env= instead",
    "nfs": "this server mounts no NFS volumes: drop nfs= and read the data from a path or a URL the code opens",
    "buckets": "this server mounts no buckets: drop buckets= and read the data through its S3 URL in the code",
}


@dataclasses.dataclass
class Annotation:
    """What the ``#@podstack`` line asked for: the session's ``spec`` and the ``options`` as written."""

    spec: GPUSpec
    options: dict

    @property
    def gpu_type(self) -> str | None:
        return self.spec.type


def find_annotation_line(code: str) -> tuple[int, str] | None:
    """``(line number, text)`` of the first line that starts with ``#@podstack``, or None."""
    for number, line in enumerate(code.splitlines(), 1):
        if line.strip().startswith(MARK):
            return number, line.strip()
    return None


def _options(line: str, number: int) -> dict:
    rest = line[len(MARK):]
    if rest and not rest[0].isspace():
        raise InvalidArgumentError(f"line {number}: {line[:60]!r} is not a #@podstack line; write "
                                   f"'#@podstack gpu=L40S count=1 ...' (a space after #@podstack)")
    options: dict[str, str] = {}
    last = None
    for token in rest.split():
        key, sep, value = token.partition("=")
        if not sep:
            if last == "requirements":  # a path with spaces: the SDK joins the options with spaces
                options[last] += " " + token
                continue
            raise InvalidArgumentError(f"the #@podstack line (line {number}) has {token!r}, which is not key=value; "
                                       f"known keys: {', '.join(KNOWN_KEYS)}")
        key = key.strip().lower()
        if key not in KNOWN_KEYS:
            raise InvalidArgumentError(f"the #@podstack line (line {number}) has an unknown key {key!r}; "
                                       f"known keys: {', '.join(KNOWN_KEYS)}")
        if key in options:
            raise InvalidArgumentError(f"the #@podstack line (line {number}) gives {key}= twice")
        if not value:
            raise InvalidArgumentError(f"the #@podstack line (line {number}) has {key}= without a value")
        options[key] = value
        last = key
    return options


def _whole(key: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise InvalidArgumentError(f"#@podstack {key}={value!r}: {key} must be a whole number") from None


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds > 0 or seconds != seconds or seconds == float("inf"):
        raise InvalidArgumentError(f"#@podstack timeout={value!r}: timeout must be a positive number of seconds")
    return seconds


def _flag(key: str, value: str) -> bool:
    lowered = value.lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise InvalidArgumentError(f"#@podstack {key}={value!r}: {key} must be true or false")


def _packages(value: str) -> list[str]:
    return [p.strip() for p in value.replace(",", " ").split() if p.strip()]


def embedded_requirements(code: str) -> str | None:
    """The requirements text the SDK embeds in the code (``_requirements = \"\"\"...\"\"\"`` at the top
    level), or None. Read from the syntax tree, never by running anything."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return None
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name) \
                and node.targets[0].id == "_requirements" and isinstance(node.value, ast.Constant) \
                and isinstance(node.value.value, str):
            return node.value.value
    return None


def _requirements_file(text: str, folder: str | os.PathLike | None) -> str:
    """A file holding ``text``, named by its digest (the same text: the same file, the same cached
    environment)."""
    folder = Path(folder or os.path.join(tempfile.gettempdir(), "podstack-server-requirements"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"requirements-{hashlib.sha256(text.encode()).hexdigest()[:16]}.txt"
    if not path.exists():
        partial = path.with_suffix(f".{os.getpid()}.part")
        partial.write_text(text)
        os.replace(partial, path)
    return str(path)


def parse_annotation(code: str, *, requirements_folder: str | os.PathLike | None = None) -> Annotation:
    """The spec the code's ``#@podstack`` line asks for (see the module docstring); raises
    InvalidArgumentError naming the key that is wrong."""
    found = find_annotation_line(code)
    if found is None:
        return Annotation(GPUSpec(), {})
    number, line = found
    options = _options(line, number)
    for key, why in _UNSERVED.items():
        if key in options:
            raise InvalidArgumentError(f"#@podstack {key}={options[key]}: {why}")
    spec: dict = {}
    gpu = options.get("gpu")
    if gpu is not None and gpu.lower() not in _ANY_GPU:
        spec["type"] = _SDK_TYPES.get(gpu.upper(), gpu)
    if "count" in options:
        spec["count"] = _whole("count", options["count"])
    if "fraction" in options:
        spec["fraction"] = _whole("fraction", options["fraction"])
    if "timeout" in options:
        spec["timeout"] = _seconds(options["timeout"])
    if "env" in options:
        spec["env"] = options["env"]
    packages = [*_packages(options.get("pip", "")), *_packages(options.get("uv", ""))]
    if packages:
        spec["pip"] = tuple(packages)
    if "conda" in options:
        spec["conda"] = tuple(_packages(options["conda"]))
    spec["use_uv"] = _flag("use_uv", options["use_uv"]) if "use_uv" in options else True
    if "requirements" in options:
        text = embedded_requirements(code)
        if text is None:
            raise InvalidArgumentError(
                f"#@podstack requirements={options['requirements']}: that file is on the submitting machine and "
                f"its text is not in the code (the SDK embeds it only when the file exists there); check the path, "
                f"or list the packages with pip=")
        spec["requirements"] = _requirements_file(text, requirements_folder)
    try:
        made = GPUSpec(**spec)
    except InvalidArgumentError as exc:
        raise InvalidArgumentError(f"the #@podstack line (line {number}): {exc.message}") from None
    return Annotation(made, options)
