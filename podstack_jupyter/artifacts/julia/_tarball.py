"""Artifact tarballs: reproducible writing, compression found by magic bytes, safe unpacking.

Writing follows Julia's ``Tar.create``: POSIX ustar records sorted by name, owner, group and
times zeroed, files ``0644`` or ``0755`` (the owner's execute bit), folders and symlinks
``0755``; long names use a pax ``path`` record. The same tree therefore gives the same bytes,
and compressors run without time stamps or file names, so the same sha256.

Unpacking refuses, before anything is kept: absolute paths, ``..`` components, writing
through a symlink, symlinks whose target leaves the tree (checked again on the finished tree,
following chains of links), hard links to anything but a file already unpacked, and devices,
pipes and other special members. A refused tarball raises ``UnsafeArchiveError``.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import posixpath
import stat
import tarfile
import zlib

from ...errors import ArtifactIntegrityError, InvalidArgumentError, UnsafeArchiveError

__all__ = ["COMPRESSIONS", "detect_compression", "open_decompressed", "write_tarball", "extract_tarball",
           "normalize_compression"]

_BLOCK = 512
_CHUNK = 1 << 20

#: compression name -> (magic bytes at the start of the file, archive suffix)
COMPRESSIONS = {
    "gzip": (b"\x1f\x8b", ".tar.gz"),
    "bzip2": (b"BZh", ".tar.bz2"),
    "xz": (b"\xfd7zXZ\x00", ".tar.xz"),
    "zstd": (b"\x28\xb5\x2f\xfd", ".tar.zst"),
    "none": (b"", ".tar"),
}
_ALIASES = {"gz": "gzip", "tgz": "gzip", "bz2": "bzip2", "zst": "zstd", "zstandard": "zstd", "lzma": "xz",
            "tar": "none", "": "none"}


def normalize_compression(compression) -> str:
    """``"gz"``/``"gzip"``, ``"bz2"``/``"bzip2"``, ``"xz"``, ``"zst"``/``"zstd"`` or ``None``/``"none"``."""
    if compression is None:
        return "none"
    if not isinstance(compression, str):
        raise InvalidArgumentError(f"compression must be a string or None, got {type(compression).__name__}")
    name = _ALIASES.get(compression.lower(), compression.lower())
    if name not in COMPRESSIONS:
        raise InvalidArgumentError(
            f"unknown compression {compression!r}; use one of 'xz', 'gz', 'bz2', 'zstd' or None")
    return name


def detect_compression(head: bytes) -> str:
    """The compression of a file starting with ``head`` (its first bytes): a key of ``COMPRESSIONS``."""
    for name, (magic, _) in COMPRESSIONS.items():
        if magic and head.startswith(magic):
            return name
    if head.startswith(b"PK\x03\x04"):
        raise InvalidArgumentError("this download is a zip file; artifacts are tarballs (.tar, .tar.gz, .tar.xz, "
                                   ".tar.bz2, .tar.zst), as Julia's Pkg requires")
    return "none"


def _zstd_module():
    try:  # Python 3.14
        from compression import zstd

        return "stdlib", zstd
    except ImportError:
        pass
    try:
        import zstandard

        return "zstandard", zstandard
    except ImportError:
        raise InvalidArgumentError("zstd compression needs the zstandard package: pip install zstandard") from None


def open_decompressed(path):
    """A binary reader of the tar stream inside the (possibly compressed) file ``path``."""
    raw = open(path, "rb")
    try:
        kind = detect_compression(raw.read(8))
        raw.seek(0)
        if kind == "gzip":
            return _Owning(gzip.GzipFile(fileobj=raw, mode="rb"), raw)
        if kind == "bzip2":
            return _Owning(bz2.BZ2File(raw, "rb"), raw)
        if kind == "xz":
            return _Owning(lzma.LZMAFile(raw, "rb"), raw)
        if kind == "zstd":
            flavour, module = _zstd_module()
            if flavour == "stdlib":
                return _Owning(module.ZstdFile(raw, "rb"), raw)
            return _Owning(module.ZstdDecompressor().stream_reader(raw, closefd=False), raw)
        return raw
    except BaseException:
        raw.close()
        raise


class _Owning(io.RawIOBase):
    """A decompressing reader that closes the file beneath it too."""

    def __init__(self, inner, raw):
        self.inner, self.raw = inner, raw

    def readable(self):
        return True

    def read(self, n=-1):
        return self.inner.read(n)

    def readinto(self, buffer):
        data = self.inner.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def close(self):
        if not self.closed:
            try:
                self.inner.close()
            finally:
                self.raw.close()
                super().close()


def _open_compressed_writer(raw, compression: str):
    if compression == "gzip":
        return gzip.GzipFile(filename="", fileobj=raw, mode="wb", compresslevel=9, mtime=0)
    if compression == "bzip2":
        return bz2.BZ2File(raw, "wb", compresslevel=9)
    if compression == "xz":
        return lzma.LZMAFile(raw, "wb", format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64, preset=6)
    if compression == "zstd":
        flavour, module = _zstd_module()
        if flavour == "stdlib":
            return module.ZstdFile(raw, "wb", level=19)
        return module.ZstdCompressor(level=19).stream_writer(raw, closefd=False)
    return None


# -- writing -------------------------------------------------------------------------------------

def _octal(value: int, digits: int) -> bytes:
    return b"%0*o" % (digits, value)


def _header(name: bytes, prefix: bytes, typeflag: bytes, mode: int, size: int, link: bytes) -> bytes:
    block = bytearray(_BLOCK)
    block[0:len(name)] = name
    block[100:108] = _octal(mode, 6) + b" \0"
    block[108:116] = b"000000 \0"
    block[116:124] = b"000000 \0"
    if size < 8 ** 11:
        block[124:136] = _octal(size, 11) + b" "
    elif size < 8 ** 12:
        block[124:136] = _octal(size, 12)
    else:  # base-256, as GNU tar; the exact size also goes in a pax record
        block[124:136] = bytes([0x80]) + size.to_bytes(11, "big")
    block[136:148] = b"00000000000 "
    block[148:156] = b"        "
    block[156:157] = typeflag
    block[157:157 + len(link)] = link
    block[257:263] = b"ustar\0"
    block[263:265] = b"00"
    block[329:337] = b"000000 \0"
    block[337:345] = b"000000 \0"
    block[345:345 + len(prefix)] = prefix
    block[148:156] = _octal(sum(block), 6) + b"\0 "
    return bytes(block)


def _pax_record(key: bytes, value: bytes) -> bytes:
    body = b" %s=%s\n" % (key, value)
    n = len(body)
    while len(b"%d" % n) + len(body) != n:
        n = len(b"%d" % n) + len(body)
    return b"%d%s" % (n, body)


def _pad(size: int) -> bytes:
    return b"\0" * (-size % _BLOCK)


def _headers(path: bytes, typeflag: bytes, mode: int, size: int, link: bytes = b"") -> bytes:
    """The header block(s) of one member: a pax record first when a name or size does not fit ustar."""
    if b"\0" in path or b"\0" in link:
        raise InvalidArgumentError(f"a name in the folder contains a NUL byte: {path!r}")
    records = []
    if len(link) > 100:
        records.append(_pax_record(b"linkpath", link))
        link = b""
    name, prefix = path, b""
    if len(path) > 100:
        cut = path.rfind(b"/", 0, 101) if len(path) < 256 else -1
        if cut > 0:
            prefix, name = path[:cut], path[cut + 1:]
        if cut <= 0 or len(name) > 100 or len(prefix) > 155:
            records.append(_pax_record(b"path", path))
            name = prefix = b""
    if size >= 8 ** 12:
        records.append(_pax_record(b"size", b"%d" % size))
    out = b""
    if records:
        data = b"".join(sorted(records, key=lambda r: r.split(b" ", 1)[1]))
        out = _header(b"", b"", b"x", 0, len(data), b"") + data + _pad(len(data))
    return out + _header(name, prefix, typeflag, mode, size, link)


def _write_file_data(out, path: str, size: int) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    try:
        left = size
        while left > 0:
            chunk = os.read(fd, min(_CHUNK, left))
            if not chunk:
                break
            out.write(chunk)
            left -= len(chunk)
        if left or os.read(fd, 1):
            raise InvalidArgumentError(f"{path!r} changed size while it was archived; archive it again "
                                       "once nothing writes to the folder")
    finally:
        os.close(fd)
    out.write(_pad(size))


def _write_tree(out, folder: str, tar_path: bytes) -> int:
    """Members of ``folder`` under ``tar_path`` (``b""`` at the root), sorted by name; returns how many."""
    written = 0
    with os.scandir(folder) as listing:
        entries = sorted(listing, key=lambda e: os.fsencode(e.name))
    for entry in entries:
        name = os.fsencode(entry.name)
        path = tar_path + b"/" + name if tar_path else name
        if entry.is_symlink():
            out.write(_headers(path, b"2", 0o755, 0, os.fsencode(os.readlink(entry.path))))
        elif entry.is_dir(follow_symlinks=False):
            out.write(_headers(path, b"5", 0o755, 0))
            _write_tree(out, entry.path, path)
        elif entry.is_file(follow_symlinks=False):
            st = entry.stat(follow_symlinks=False)
            out.write(_headers(path, b"0", 0o755 if st.st_mode & stat.S_IXUSR else 0o644, st.st_size))
            _write_file_data(out, entry.path, st.st_size)
        else:
            raise InvalidArgumentError(f"{entry.path!r} is neither a file, a folder nor a symlink; "
                                       "an artifact cannot hold it")
        written += 1
    return written


def write_tarball(folder, out, compression: str) -> None:
    """Write the reproducible tarball of ``folder`` (its content at the archive's root) to the
    binary file ``out``, compressed with ``compression`` (a key of ``COMPRESSIONS``)."""
    writer = _open_compressed_writer(out, compression)
    target = writer if writer is not None else out
    buffered = io.BufferedWriter(_Sink(target), buffer_size=_CHUNK)
    if _write_tree(buffered, os.fspath(folder), b"") == 0:
        buffered.write(_headers(b".", b"5", 0o755, 0))  # an empty tree is one "." folder, as Tar.jl writes it
    buffered.write(b"\0" * (2 * _BLOCK))  # end-of-archive marker
    buffered.flush()
    if writer is not None:
        writer.close()


class _Sink(io.RawIOBase):
    def __init__(self, target):
        self.target = target

    def writable(self):
        return True

    def write(self, data):
        self.target.write(data)
        return len(data)


# -- unpacking -----------------------------------------------------------------------------------

def _clean_parts(name: str, what: str) -> list[str]:
    """The components of a member path, refusing absolute paths and ``..``; ``[]`` is the root."""
    if not name and what == "link target":
        raise UnsafeArchiveError("a hard link in the tarball has an empty target", member=name)
    if name.startswith("/") or (len(name) > 1 and name[1] == ":" and name[0].isalpha()) or name.startswith("\\"):
        raise UnsafeArchiveError(f"the tarball holds an absolute {what} {name!r}; refusing to unpack it", member=name)
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchiveError(f"the tarball holds a {what} with a '..' component ({name!r}) that could write "
                                 "outside the artifact's folder; refusing to unpack it", member=name)
    return parts


def _parent_ready(root: str, parts: list[str], member: str) -> str:
    """Create the folders above ``parts`` under ``root`` (never through a symlink or a file);
    returns the member's full path."""
    path = root
    for part in parts[:-1]:
        path = os.path.join(path, part)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            os.mkdir(path, 0o755)
            continue
        if stat.S_ISLNK(st.st_mode):
            raise UnsafeArchiveError(f"the tarball member {member!r} would be written through the symlink "
                                     f"{part!r}; refusing to unpack it", member=member)
        if not stat.S_ISDIR(st.st_mode):
            raise UnsafeArchiveError(f"the tarball member {member!r} lies under {part!r}, which the tarball made "
                                     "a file", member=member)
    return os.path.join(path, parts[-1])


def _remove_existing(path: str) -> None:
    """A later member replaces an earlier one with the same path (tar's rule)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        import shutil

        shutil.rmtree(path)
    else:
        os.unlink(path)


def _copy_stream(source, path: str, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
                 | getattr(os, "O_BINARY", 0), mode)
    with os.fdopen(fd, "wb") as f:
        while chunk := source.read(_CHUNK):
            f.write(chunk)
    os.chmod(path, mode)  # not narrowed by the umask: the execute bit is part of the tree hash


def _file_mode(member_mode: int) -> int:
    return 0o755 if member_mode & stat.S_IXUSR else 0o644


def _check_symlink_target(parts: list[str], target: str, member: str) -> None:
    if not target:
        raise UnsafeArchiveError(f"the symlink {member!r} in the tarball has an empty target", member=member)
    if target.startswith("/") or (len(target) > 1 and target[1] == ":" and target[0].isalpha()):
        raise UnsafeArchiveError(f"the symlink {member!r} in the tarball points to the absolute path {target!r}, "
                                 "outside the artifact; refusing to unpack it", member=member)
    resolved = posixpath.normpath(posixpath.join(*parts[:-1], target) if len(parts) > 1 else target)
    if resolved == ".." or resolved.startswith("../"):
        raise UnsafeArchiveError(f"the symlink {member!r} in the tarball points to {target!r}, outside the "
                                 "artifact; refusing to unpack it", member=member)


def _check_links_stay_inside(root: str) -> None:
    """Follow every symlink of the finished tree (chains included): each must resolve inside it."""
    real_root = os.path.realpath(root)
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(folder, name)
            if os.path.islink(path):
                real = os.path.realpath(path)
                if real != real_root and not real.startswith(real_root + os.sep):
                    member = os.path.relpath(path, root)
                    raise UnsafeArchiveError(f"the symlink {member!r} in the tarball resolves to a path outside "
                                             "the artifact (through other links); refusing to unpack it",
                                             member=member)


def extract_tarball(archive_path, dest) -> None:
    """Unpack the (possibly compressed) tarball ``archive_path`` into the empty folder ``dest``.

    ``UnsafeArchiveError`` for a member that would land outside ``dest``; ``ArtifactIntegrityError``
    when the file is not a readable tarball. On error ``dest`` holds a partial tree: the caller
    unpacks into a temporary folder and deletes it.
    """
    root = os.fspath(dest)
    try:
        with open_decompressed(archive_path) as stream, \
                tarfile.open(fileobj=stream, mode="r|") as archive:
            for member in archive:
                _extract_member(archive, member, root)
    except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError) as exc:
        if isinstance(exc, OSError) and not _is_format_error(exc):
            raise
        raise ArtifactIntegrityError(f"{os.fspath(archive_path)!r} is not a readable tarball ({exc}); the download "
                                     "may be truncated or not an artifact archive") from None
    _check_links_stay_inside(root)


def _is_format_error(exc: OSError) -> bool:
    # bz2 and gzip report corrupt data as a bare OSError without errno
    return exc.errno is None


def _extract_member(archive, member: tarfile.TarInfo, root: str) -> None:
    name = member.name
    parts = _clean_parts(name, "path")
    if not parts:  # the archive's root folder ("." or "./")
        if not member.isdir():
            raise UnsafeArchiveError(f"the tarball's root {name!r} is not a folder", member=name)
        return
    path = _parent_ready(root, parts, name)
    if member.isdir():
        try:
            st = os.lstat(path)
            if stat.S_ISDIR(st.st_mode):
                return
            os.unlink(path)
        except FileNotFoundError:
            pass
        os.mkdir(path, 0o755)
    elif member.isreg():
        _remove_existing(path)
        source = archive.extractfile(member)
        _copy_stream(source, path, _file_mode(member.mode))
    elif member.issym():
        _check_symlink_target(parts, member.linkname, name)
        _remove_existing(path)
        os.symlink(member.linkname, path)
    elif member.islnk():
        target_parts = _clean_parts(member.linkname, "link target")
        target = os.path.join(root, *target_parts)
        if not target_parts or not os.path.isfile(target) or os.path.islink(target) or \
                any(os.path.islink(os.path.join(root, *target_parts[:i])) for i in range(1, len(target_parts))):
            raise UnsafeArchiveError(f"the hard link {name!r} in the tarball points to {member.linkname!r}, which is "
                                     "not a file unpacked before it; refusing to unpack it", member=name)
        _remove_existing(path)
        with open(target, "rb") as source:
            _copy_stream(source, path, _file_mode(member.mode))
    else:
        kind = {tarfile.CHRTYPE: "character device", tarfile.BLKTYPE: "block device",
                tarfile.FIFOTYPE: "named pipe"}.get(member.type, f"entry of type {member.type!r}")
        raise UnsafeArchiveError(f"the tarball member {name!r} is a {kind}; an artifact holds only files, folders "
                                 "and symlinks (as Julia's Tar requires)", member=name)
