"""``Artifacts.toml``: where it is, what it says, and rewriting it as Julia's Pkg does.

Reading keeps everything Julia reads (``git-tree-sha1``, ``lazy``, ``[[name.download]]``
``url``/``sha256``, platform arrays) and every other key as ``metadata``. Writing goes to a
temporary file renamed over the old one, keys sorted and tables indented as ``Pkg`` writes
them, so a file edited here and by Julia stays in one style. Comments are not kept (Pkg
drops them too).
"""

from __future__ import annotations

import dataclasses
import datetime
import inspect
import math
import os
import re
import tempfile
from pathlib import Path

from ...errors import InvalidArgumentError, NotFoundError
from ._platform import Platform

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

__all__ = ["ARTIFACTS_TOML_NAMES", "DownloadInfo", "ArtifactEntry", "find_artifacts_toml", "read_toml",
           "write_toml", "parse_entries", "check_tree_sha1", "check_sha256"]

#: file names searched in each folder; the first one found wins, as in Julia
ARTIFACTS_TOML_NAMES = ("JuliaArtifacts.toml", "Artifacts.toml")
# a folder holding one of these is a project's top: the search goes no higher
_PROJECT_MARKERS = ("JuliaProject.toml", "Project.toml", "pyproject.toml", "setup.py", "setup.cfg")
_SHA1 = re.compile(r"^[0-9a-fA-F]{40}$")
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
_KNOWN_KEYS = ("git-tree-sha1", "lazy", "download")


def check_tree_sha1(value, what: str = "git-tree-sha1") -> str:
    if not isinstance(value, str) or not _SHA1.match(value):
        raise InvalidArgumentError(f"{what} must be 40 hex characters (a git tree id such as "
                                   f"compute_git_tree_sha1() returns), got {value!r}")
    return value.lower()


def check_sha256(value, what: str = "sha256") -> str:
    if not isinstance(value, str) or not _SHA256.match(value):
        raise InvalidArgumentError(f"{what} must be 64 hex characters (compute_sha256() of the archive), got {value!r}")
    return value.lower()


@dataclasses.dataclass(frozen=True)
class DownloadInfo:
    """One ``[[name.download]]`` entry: where to fetch a tarball and its sha256 (``""`` if not given)."""

    url: str
    sha256: str = ""


@dataclasses.dataclass(frozen=True)
class ArtifactEntry:
    """An artifact of ``Artifacts.toml`` (for one platform when the artifact has several).

    ``git_tree_sha1`` names its content; ``downloads`` lists the mirrors in the order they are
    tried; ``lazy`` says it is installed only when first used; ``platform`` is ``None`` for an
    artifact that is the same everywhere; ``metadata`` holds every other key (``description``,
    ``version``, ...) as TOML gave it.
    """

    name: str
    git_tree_sha1: str
    downloads: tuple = ()
    lazy: bool = False
    platform: Platform | None = None
    metadata: dict = dataclasses.field(default_factory=dict)

    @property
    def os(self):
        return self.platform.os if self.platform else None

    @property
    def arch(self):
        return self.platform.arch if self.platform else None


def _entry(name: str, data, where: str, platform_specific: bool) -> ArtifactEntry:
    if not isinstance(data, dict):
        raise InvalidArgumentError(f"{where}artifact {name!r} must be a table (or an array of tables), "
                                   f"got {type(data).__name__}")
    if "git-tree-sha1" not in data:
        raise InvalidArgumentError(f"{where}artifact {name!r} has no git-tree-sha1")
    tree = check_tree_sha1(data["git-tree-sha1"], f"{where}git-tree-sha1 of {name!r}")
    downloads = data.get("download", [])
    if isinstance(downloads, dict):
        downloads = [downloads]
    if not isinstance(downloads, list):
        raise InvalidArgumentError(f"{where}download of {name!r} must be [[{name}.download]] tables")
    infos = []
    for d in downloads:
        if not isinstance(d, dict) or not isinstance(d.get("url"), str):
            raise InvalidArgumentError(f"{where}each [[{name}.download]] of needs a url string, got {d!r}")
        sha = d.get("sha256", "")
        infos.append(DownloadInfo(d["url"], check_sha256(sha, f"{where}sha256 of {d['url']}") if sha else ""))
    lazy = data.get("lazy", False)
    if not isinstance(lazy, bool):
        raise InvalidArgumentError(f"{where}lazy of {name!r} must be true or false, got {lazy!r}")
    platform = Platform.from_entry(data, f"{where}artifact {name!r}: ") if platform_specific else None
    metadata = {k: v for k, v in data.items() if k not in _KNOWN_KEYS}
    return ArtifactEntry(name, tree, tuple(infos), lazy, platform, metadata)


def parse_entries(data: dict, where: str = "") -> dict[str, list[ArtifactEntry]]:
    """Every artifact of a parsed ``Artifacts.toml``: name -> its entries (one per platform)."""
    out = {}
    for name, value in data.items():
        if isinstance(value, list):
            out[name] = [_entry(name, item, where, True) for item in value]
        else:
            out[name] = [_entry(name, value, where, False)]
    return out


def read_toml(path) -> dict:
    """The parsed content of an ``Artifacts.toml`` (an empty dict if the file does not exist)."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as exc:
        raise InvalidArgumentError(f"{os.fspath(path)} is not valid TOML: {exc}") from None


# -- writing, in Pkg's layout ----------------------------------------------------------------------

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(key: str) -> str:
    return key if _BARE_KEY.match(key) else _string(key)


def _string(value: str) -> str:
    out = []
    for ch in value:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _value(value, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v, where) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_key(str(k))} = {_value(v, where)}" for k, v in value.items()) + "}"
    raise InvalidArgumentError(f"{where}: {type(value).__name__} values cannot be written to TOML "
                               "(use str, int, float, bool, dates, lists or dicts)")


def _is_table_array(value) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _emit_table(lines: list, path: list, table: dict, depth: int, header: str | None) -> None:
    indent = "    " * max(depth - 1, 0)
    if header is not None:
        if lines:
            lines.append("")
        lines.append(indent + header)
    simple = sorted(k for k, v in table.items() if not isinstance(v, dict) and not _is_table_array(v))
    for key in simple:
        lines.append(f"{indent}{_key(key)} = {_value(table[key], '.'.join(path + [key]))}")
    nested = sorted(k for k in table if k not in simple)
    for key in nested:
        value = table[key]
        sub = path + [key]
        dotted = ".".join(_key(p) for p in sub)
        if isinstance(value, dict):
            _emit_table(lines, sub, value, depth + 1, f"[{dotted}]")
        else:
            for item in value:
                _emit_table(lines, sub, item, depth + 1, f"[[{dotted}]]")


def dumps(data: dict) -> str:
    """``data`` as TOML text in Pkg's layout (sorted keys, sub-tables indented by four spaces)."""
    lines: list[str] = []
    top_simple = {k: v for k, v in data.items() if not isinstance(v, dict) and not _is_table_array(v)}
    for key in sorted(top_simple):
        lines.append(f"{_key(key)} = {_value(top_simple[key], key)}")
    for key in sorted(k for k in data if k not in top_simple):
        value = data[key]
        if isinstance(value, dict):
            _emit_table(lines, [key], value, 1, f"[{_key(key)}]")
        else:
            for item in value:
                _emit_table(lines, [key], item, 1, f"[[{_key(key)}]]")
    return "\n".join(lines) + "\n"


def write_toml(path, data: dict) -> None:
    """Replace ``path`` with ``data`` in one rename: a reader sees the old file or the new one."""
    target = Path(path)
    text = dumps(data)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        if target.exists():
            os.chmod(tmp, target.stat().st_mode & 0o777)
        else:
            os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


# -- finding the file ------------------------------------------------------------------------------

# modules that call user code without being it (thread pools, runpy...): look past them
_MACHINERY = ("concurrent.", "threading", "runpy", "asyncio", "importlib", "functools", "contextlib")


def _caller_folder() -> Path:
    """Where a call from user code should start looking: the folder of the module that called
    (a library shipping its Artifacts.toml), else the current folder (notebooks, the REPL, scripts)."""
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    frame = inspect.currentframe()
    try:
        while frame is not None:
            filename = frame.f_code.co_filename
            module_name = frame.f_globals.get("__name__", "__main__")
            if not os.path.abspath(filename).startswith(here + os.sep) and not module_name.startswith(_MACHINERY):
                module_file = frame.f_globals.get("__file__")
                if module_name != "__main__" and module_file and os.path.isfile(module_file):
                    return Path(module_file).resolve().parent
                break
            frame = frame.f_back
    finally:
        del frame
    return Path.cwd()


def find_artifacts_toml(start=None) -> Path | None:
    """The ``Artifacts.toml`` that applies at ``start`` (a folder or file), or ``None``.

    Looks in ``start`` and then each parent folder; in each, ``JuliaArtifacts.toml`` wins over
    ``Artifacts.toml`` (as in Julia). The search stops after a folder that marks a project's
    top (``Project.toml``, ``pyproject.toml``, ``setup.py``...). ``start`` defaults to the
    calling module's folder, or the current folder in a notebook, the REPL or a script.
    """
    folder = Path(start).resolve() if start is not None else _caller_folder()
    if folder.is_file():
        folder = folder.parent
    while True:
        for name in ARTIFACTS_TOML_NAMES:
            candidate = folder / name
            if candidate.is_file():
                return candidate
        if any((folder / marker).exists() for marker in _PROJECT_MARKERS) or folder.parent == folder:
            return None
        folder = folder.parent


def resolve_toml(toml_path=None, must_exist: bool = True) -> Path:
    """``toml_path`` as a Path, or the one ``find_artifacts_toml`` finds; ``NotFoundError`` if none."""
    if toml_path is not None:
        if not isinstance(toml_path, (str, os.PathLike)):
            raise InvalidArgumentError(f"toml_path must be a path, got {type(toml_path).__name__}")
        path = Path(toml_path).expanduser()
        if path.is_dir():
            for name in ARTIFACTS_TOML_NAMES:
                if (path / name).is_file():
                    return path / name
            path = path / "Artifacts.toml"
        if must_exist and not path.is_file():
            raise NotFoundError(f"{path} does not exist; bind an artifact first (bind_artifact / add_artifact) "
                                "or pass the right toml_path")
        return path
    found = find_artifacts_toml()
    if found is None:
        raise NotFoundError(f"no Artifacts.toml or JuliaArtifacts.toml in {Path.cwd()} or its parent folders "
                            "(up to the project's top); pass toml_path=... or create one with bind_artifact()")
    return found
