"""Using the artifacts an ``Artifacts.toml`` names: ``artifact()``, ``load_artifacts()`` and the manager."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from ...errors import ArtifactNotFoundError, InvalidArgumentError
from . import _install
from ._download import DEFAULT_RETRIES
from ._platform import Platform, host_platform, select_platform
from ._toml import ArtifactEntry, check_tree_sha1, find_artifacts_toml, parse_entries, read_toml, resolve_toml

__all__ = ["ArtifactManager", "load_artifacts", "artifact", "artifact_exists", "clear_artifact_cache",
           "get_artifacts_toml", "ensure_artifact_installed"]


def _check_platform(platform) -> Platform | None:
    if platform is None or isinstance(platform, Platform):
        return platform
    if isinstance(platform, dict):
        tags = dict(platform)
        try:
            return Platform(tags.pop("arch"), tags.pop("os"), **tags)
        except KeyError:
            raise InvalidArgumentError("platform= as a dict needs 'os' and 'arch' keys") from None
    raise InvalidArgumentError(f"platform must be a Platform or a dict of tags, got {type(platform).__name__}")


class ArtifactManager:
    """The artifacts of one ``Artifacts.toml``, for one platform (this machine's by default).

    ``manager.artifacts`` maps each name to the ``ArtifactEntry`` chosen for the platform
    (with ``.metadata``); ``manager["name"]`` is the artifact's folder, installed on first
    use. The file is read again when it changes on disk. The cache folder is looked up on
    every call, so ``set_cache_dir`` takes effect at once (unless ``cache_dir`` was given).
    """

    def __init__(self, toml_path, cache_dir=None, platform=None, verbose: bool = False,
                 retries: int = DEFAULT_RETRIES):
        self.toml_path = Path(toml_path).absolute()
        self._cache_dir = Path(cache_dir).expanduser().absolute() if cache_dir is not None else None
        self.platform = _check_platform(platform) or host_platform()
        self.verbose = verbose
        self.retries = retries
        self._lock = threading.Lock()
        self._stamp = None
        self._entries: dict[str, list[ArtifactEntry]] = {}
        self._chosen: dict[str, ArtifactEntry] = {}
        self._reload()

    def __repr__(self):
        return f"ArtifactManager({str(self.toml_path)!r}, {len(self._chosen)} artifacts for {self.platform.triplet()})"

    @property
    def artifacts(self) -> dict[str, ArtifactEntry]:
        """Name -> the entry chosen for this platform (the file is read again if it changed)."""
        self._reload()
        return dict(self._chosen)

    @property
    def cache_dir(self) -> Path:
        return self._cache_dir or _install.get_cache_dir()

    def _reload(self) -> None:
        try:
            st = self.toml_path.stat()
        except FileNotFoundError:
            raise ArtifactNotFoundError(f"{self.toml_path} does not exist") from None
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        with self._lock:
            if stamp == self._stamp:
                return
            entries = parse_entries(read_toml(self.toml_path), f"{self.toml_path}: ")
            chosen = {}
            for name, variants in entries.items():
                if variants[0].platform is None:
                    chosen[name] = variants[0]
                else:
                    best = select_platform([(v.platform, v) for v in variants], self.platform)
                    if best is not None:
                        chosen[name] = best
            self._entries, self._chosen, self._stamp = entries, chosen, stamp

    def entry(self, name: str) -> ArtifactEntry:
        """The entry for ``name`` on this manager's platform; ``ArtifactNotFoundError`` names what exists."""
        if not isinstance(name, str) or not name:
            raise InvalidArgumentError(f"an artifact name must be a non-empty string, got {name!r}")
        self._reload()
        found = self._chosen.get(name)
        if found is not None:
            return found
        variants = self._entries.get(name)
        if variants:
            offered = ", ".join(v.platform.triplet() for v in variants)
            raise ArtifactNotFoundError(f"artifact {name!r} in {self.toml_path} has no entry for this platform "
                                        f"({self.platform.triplet()}); it has: {offered}")
        raise ArtifactNotFoundError(f"no artifact {name!r} in {self.toml_path}; it names: "
                                    f"{sorted(self._entries) or 'nothing'}")

    def __contains__(self, name) -> bool:
        self._reload()
        return name in self._chosen

    def __getitem__(self, name: str) -> Path:
        return self.get_path(name)

    def get_path(self, name: str, download: bool = True) -> Path:
        """The artifact's folder, installing it first if needed (``download=False``: only if installed)."""
        entry = self.entry(name)
        path = _install.artifact_path(entry.git_tree_sha1, self.cache_dir)
        if path.is_dir():
            return path
        if not download:
            raise ArtifactNotFoundError(f"artifact {name!r} ({entry.git_tree_sha1}) is not installed in "
                                        f"{self.cache_dir} and download=False")
        if self.verbose:
            print(f"Installing artifact {name!r} ({entry.git_tree_sha1}) into {self.cache_dir}")
        return _install.install(name, entry.git_tree_sha1, entry.downloads, self.cache_dir, self.retries,
                                where=f" of {self.toml_path}")

    def exists(self, name: str) -> bool:
        """Whether the artifact is installed (``False`` for a name the file does not hold)."""
        self._reload()
        entry = self._chosen.get(name)
        return entry is not None and _install.is_installed(entry.git_tree_sha1, self.cache_dir)

    def ensure_installed(self, include_lazy: bool = False) -> dict[str, Path]:
        """Install every artifact of the file for this platform, except ``lazy = true`` ones unless
        ``include_lazy`` (what Julia's ``Pkg.instantiate`` does); returns name -> folder."""
        return {name: self.get_path(name) for name, entry in sorted(self.artifacts.items())
                if include_lazy or not entry.lazy}

    def clear(self, name: str | None = None) -> list[str]:
        """Remove the installed copy of ``name`` (or of every artifact of this file); returns the names removed."""
        names = [name] if name is not None else sorted(self.artifacts)
        removed = []
        for n in names:
            entry = self.entry(n)
            if _install.remove_tree(entry.git_tree_sha1, self.cache_dir):
                removed.append(n)
        return removed


_managers: dict[tuple, ArtifactManager] = {}
_managers_lock = threading.Lock()


def load_artifacts(toml_path=None, cache_dir=None, verbose: bool = False, platform=None) -> ArtifactManager:
    """The ``ArtifactManager`` of ``toml_path`` (default: the ``Artifacts.toml`` found from here)::

        manager = load_artifacts("Artifacts.toml")
        manager.artifacts["MyEmulator"].metadata["description"]
        manager["MyEmulator"]            # its folder, installed on first use
    """
    path = resolve_toml(toml_path).absolute()
    key = (str(path), str(cache_dir) if cache_dir is not None else None, repr(_check_platform(platform)))
    with _managers_lock:
        manager = _managers.get(key)
        if manager is None:
            manager = _managers[key] = ArtifactManager(path, cache_dir=cache_dir, platform=platform, verbose=verbose)
        manager.verbose = verbose
        return manager


def get_artifacts_toml(search_path=None) -> Path | None:
    """The ``Artifacts.toml`` in force: ``search_path`` if it is a file, else the first
    ``JuliaArtifacts.toml`` or ``Artifacts.toml`` found from ``search_path`` (or here) upwards."""
    if search_path is not None and Path(search_path).is_file():
        return Path(search_path)
    return find_artifacts_toml(search_path)


def artifact(name: str, toml_path=None, verbose: bool = False, platform=None) -> Path:
    """The folder of artifact ``name``, installed on first use (Julia's ``artifact"name"``).

    ``name`` may go on with a path inside the artifact: ``artifact("MyData/train/part-0.csv")``.
    The ``Artifacts.toml`` is ``toml_path`` or the one found from the calling module's folder
    (a notebook's: the current folder) upwards; ``platform`` picks among platform-specific
    entries (default: this machine).
    """
    if not isinstance(name, str) or not name.strip("/"):
        raise InvalidArgumentError(f"artifact: name must be a non-empty string, got {name!r}")
    base, _, inner = name.strip("/").partition("/")
    if ".." in inner.split("/"):
        raise InvalidArgumentError(f"artifact: {name!r} leaves the artifact's folder")
    folder = load_artifacts(toml_path, verbose=verbose, platform=platform).get_path(base)
    if not inner:
        return folder
    target = folder.joinpath(*[p for p in inner.split("/") if p])
    if not os.path.lexists(target):
        raise ArtifactNotFoundError(f"artifact {base!r} has no {inner!r} (in {folder})")
    return target


def artifact_exists(name: str, toml_path=None) -> bool:
    """Whether artifact ``name`` is installed. A 40-hex ``git-tree-sha1`` works too, without a file."""
    if isinstance(name, str) and len(name) == 40 and toml_path is None:
        try:
            return _install.is_installed(check_tree_sha1(name))
        except InvalidArgumentError:
            pass
    return load_artifacts(toml_path).exists(name)


def ensure_artifact_installed(name: str, toml_path=None, platform=None) -> Path:
    """Install ``name`` now (Julia's ``ensure_artifact_installed``); returns its folder."""
    return load_artifacts(toml_path, platform=platform).get_path(name)


def clear_artifact_cache(name: str | None = None, toml_path=None) -> list[str]:
    """Remove installed artifacts: ``name`` (from the ``Artifacts.toml`` in force), or with no
    name every artifact in the cache folder. Returns what was removed (names, or tree hashes)."""
    if name is not None:
        return load_artifacts(toml_path).clear(name)
    if toml_path is not None:
        return load_artifacts(toml_path).clear()
    removed = []
    for tree in _install.installed_hashes():
        if _install.remove_tree(tree):
            removed.append(tree)
    return removed
