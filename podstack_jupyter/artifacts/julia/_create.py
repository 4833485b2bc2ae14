"""Making artifacts and writing them into ``Artifacts.toml``: create, bind, unbind, add."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from ...errors import InvalidArgumentError, NotFoundError
from . import _install
from ._download import DEFAULT_RETRIES, download
from ._platform import Platform
from ._tarball import COMPRESSIONS, normalize_compression, write_tarball
from ._toml import _KNOWN_KEYS, DownloadInfo, check_sha256, check_tree_sha1, read_toml, resolve_toml, write_toml
from ._treehash import compute_git_tree_sha1

__all__ = ["create_artifact", "bind_artifact", "unbind_artifact", "add_download_source", "add_artifact",
           "query_artifact_info", "archive_suffix"]


def archive_suffix(compression) -> str:
    """``.tar.xz``, ``.tar.gz``, ``.tar.bz2``, ``.tar.zst`` or ``.tar``."""
    return COMPRESSIONS[normalize_compression(compression)][1]


class _HashingWriter:
    def __init__(self, raw):
        self.raw, self.sha256 = raw, hashlib.sha256()

    def write(self, data):
        self.sha256.update(data)
        return self.raw.write(data)

    def flush(self):
        self.raw.flush()


def create_artifact(directory, archive_path=None, compression: str | None = "xz") -> dict:
    """Archive the folder ``directory`` as an artifact tarball; returns ``{"git_tree_sha1",
    "sha256", "archive_path"}``, what ``bind_artifact`` needs.

    The folder's content is at the archive's root (as Julia's ``archive_artifact`` writes it).
    The archive is reproducible: the same tree gives the same bytes, so the same sha256.
    ``compression``: ``"xz"`` (default), ``"gz"``, ``"bz2"``, ``"zstd"`` or ``None``.
    ``archive_path`` defaults to ``<temp folder>/<git-tree-sha1>.tar.xz``.
    """
    if not isinstance(directory, (str, os.PathLike)) or not Path(directory).is_dir():
        raise InvalidArgumentError(f"create_artifact: {directory!r} is not a folder")
    kind = normalize_compression(compression)
    folder = Path(directory)
    git_tree_sha1 = compute_git_tree_sha1(folder)
    target = Path(archive_path) if archive_path is not None else \
        Path(tempfile.gettempdir()) / f"{git_tree_sha1}{COMPRESSIONS[kind][1]}"
    target = target.expanduser().absolute()
    if target == folder.absolute() or folder.absolute() in target.parents:
        raise InvalidArgumentError(f"create_artifact: the archive {target} would be written inside the folder "
                                   "it archives; write it elsewhere")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as raw:
            out = _HashingWriter(raw)
            write_tarball(folder, out, kind)
            out.flush()
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    # the tree hash is taken again after archiving: a file changed meanwhile must not give an entry that lies
    if compute_git_tree_sha1(folder) != git_tree_sha1:
        target.unlink()
        raise InvalidArgumentError(f"create_artifact: {folder} changed while it was archived; try again once "
                                   "nothing writes to it")
    return {"git_tree_sha1": git_tree_sha1, "sha256": out.sha256.hexdigest(), "archive_path": str(target)}


def _platform_of(platform) -> Platform | None:
    if platform is None or isinstance(platform, Platform):
        return platform
    if isinstance(platform, dict):
        tags = dict(platform)
        if "os" not in tags or "arch" not in tags:
            raise InvalidArgumentError("platform= as a dict needs 'os' and 'arch'")
        return Platform(tags.pop("arch"), tags.pop("os"), **tags)
    raise InvalidArgumentError(f"platform must be a Platform or a dict, got {type(platform).__name__}")


def _same_platform(entry: dict, platform: Platform) -> bool:
    try:
        return Platform.from_entry(entry) == platform
    except InvalidArgumentError:
        return False


def _downloads(download_url, sha256, download_info) -> list[dict]:
    pairs = []
    if download_url is not None:
        pairs.append((download_url, sha256))
    elif sha256 is not None:
        raise InvalidArgumentError("sha256 given without download_url")
    pairs += [tuple(p) for p in (download_info or [])]
    out = []
    for pair in pairs:
        if len(pair) != 2 or not isinstance(pair[0], str) or not pair[0]:
            raise InvalidArgumentError(f"a download is (url, sha256), got {pair!r}")
        url, digest = pair
        if digest is None:
            raise InvalidArgumentError(f"the download {url} needs the sha256 of its archive (compute_sha256)")
        out.append({"sha256": check_sha256(digest, f"sha256 of {url}"), "url": url})
    return out


def bind_artifact(toml_path, name: str, git_tree_sha1: str, download_url: str | None = None,
                  sha256: str | None = None, lazy: bool = False, force: bool = False, *, platform=None,
                  download_info=None, metadata: dict | None = None) -> Path:
    """Write artifact ``name`` into ``toml_path`` (created if needed), as Julia's ``bind_artifact!``.

    ``download_url``/``sha256`` (and more mirrors as ``download_info=[(url, sha256), ...]``) say
    where to fetch it; ``lazy=True`` installs it only when first used; ``platform`` (a
    ``Platform`` or ``{"os": ..., "arch": ..., ...}``) makes it one entry of a platform array;
    ``metadata`` adds keys (``description``, ``version``...). An existing binding is an error
    unless ``force=True``. Returns the file's path.
    """
    if not isinstance(name, str) or not name or "/" in name:
        raise InvalidArgumentError(f"an artifact name must be a non-empty string without '/', got {name!r}")
    path = resolve_toml(toml_path, must_exist=False)
    tree = check_tree_sha1(git_tree_sha1)
    plat = _platform_of(platform)
    meta = dict(metadata or {})
    reserved = set(meta) & (set(_KNOWN_KEYS) | {"os", "arch"})
    if reserved:
        raise InvalidArgumentError(f"metadata may not set {sorted(reserved)}: they are bind_artifact's own arguments")
    entry: dict = {**meta, "git-tree-sha1": tree}
    if lazy:
        entry["lazy"] = True
    downloads = _downloads(download_url, sha256, download_info)
    if downloads:
        entry["download"] = downloads
    data = read_toml(path)
    if plat is None:
        if name in data and not force:
            raise InvalidArgumentError(f"{path} already binds {name!r}; pass force=True to replace it")
        data[name] = entry
    else:
        entry.update(plat.tags)
        Platform.from_entry(entry, f"artifact {name!r}: ")  # Julia must be able to read it back
        existing = data.get(name)
        if isinstance(existing, dict):
            if not force:
                raise InvalidArgumentError(f"{path} binds {name!r} for every platform; pass force=True to replace "
                                           "it by platform-specific entries")
            existing = []
        existing = list(existing or [])
        if any(_same_platform(e, plat) for e in existing) and not force:
            raise InvalidArgumentError(f"{path} already binds {name!r} for {plat.triplet()}; pass force=True")
        data[name] = [e for e in existing if not _same_platform(e, plat)] + [entry]
    write_toml(path, data)
    return path


def unbind_artifact(toml_path, name: str, platform=None) -> bool:
    """Remove ``name`` (only its ``platform`` entry, if given) from ``toml_path``; returns whether
    anything was removed."""
    path = resolve_toml(toml_path, must_exist=False)
    data = read_toml(path)
    if name not in data:
        return False
    plat = _platform_of(platform)
    if plat is None:
        del data[name]
    else:
        value = data[name]
        if not isinstance(value, list):
            return False
        kept = [e for e in value if not _same_platform(e, plat)]
        if len(kept) == len(value):
            return False
        if kept:
            data[name] = kept
        else:
            del data[name]
    write_toml(path, data)
    return True


def add_download_source(toml_path, name: str, download_url: str, sha256: str, platform=None) -> None:
    """Add a mirror (tried after the existing ones) to artifact ``name``."""
    path = resolve_toml(toml_path)
    data = read_toml(path)
    if name not in data:
        raise NotFoundError(f"{path} has no artifact {name!r}; bind it first")
    plat = _platform_of(platform)
    value = data[name]
    targets = [value] if isinstance(value, dict) else [e for e in value if plat is None or _same_platform(e, plat)]
    if not targets:
        raise NotFoundError(f"{path} has no {name!r} entry for {plat.triplet()}")
    if len(targets) > 1:
        raise InvalidArgumentError(f"{name!r} has one entry per platform; say which with platform=")
    new = _downloads(download_url, sha256, None)
    targets[0].setdefault("download", []).extend(new)
    write_toml(path, data)


def query_artifact_info(url: str, compute_tree_hash: bool = True, retries: int = DEFAULT_RETRIES) -> dict:
    """Download ``url`` and return ``{"url", "sha256"}`` (and ``"git_tree_sha1"`` of its content,
    unpacked safely) without writing anything anywhere else."""
    work = Path(tempfile.mkdtemp(prefix="podstack-artifact-"))
    try:
        digest, _ = download(url, work / "archive", retries=retries)
        info = {"url": url, "sha256": digest}
        if compute_tree_hash:
            info["git_tree_sha1"] = _install.unpack_verified(work / "archive", work / "tree", None)
        return info
    finally:
        _install._rmtree(work)


def add_artifact(toml_path, name: str, tarball_url: str, lazy: bool = False, force: bool = False,
                 clear: bool = True, verbose: bool = False, *, platform=None, metadata: dict | None = None,
                 retries: int = DEFAULT_RETRIES) -> dict:
    """Download ``tarball_url``, hash it and its content, and bind it as ``name`` in ``toml_path``
    (Julia's ``ArtifactUtils.add_artifact!``). ``clear=False`` keeps the unpacked tree installed
    in the cache. Returns ``{"git_tree_sha1", "sha256", "url"}``.

    The tarball is unpacked with the same checks as an install (an unsafe tarball is refused),
    so what is bound is what ``artifact(name)`` will install.
    """
    path = resolve_toml(toml_path, must_exist=False)
    if not force and name in read_toml(path) and platform is None:
        raise InvalidArgumentError(f"{path} already binds {name!r}; pass force=True to replace it")
    work = Path(tempfile.mkdtemp(prefix="podstack-artifact-"))
    try:
        if verbose:
            print(f"Downloading {tarball_url}")
        digest, _ = download(tarball_url, work / "archive", retries=retries)
        tree = _install.unpack_verified(work / "archive", work / "tree", None)
        bind_artifact(path, name, tree, tarball_url, digest, lazy=lazy, force=force, platform=platform,
                      metadata=metadata)
        if not clear:  # install from the copy already here, through the same checked, atomic path
            _install.install(name, tree, [DownloadInfo((work / "archive").as_uri(), digest)])
        if verbose:
            print(f"Bound artifact {name!r} ({tree}) in {path}")
        return {"git_tree_sha1": tree, "sha256": digest, "url": tarball_url}
    finally:
        _install._rmtree(work)
