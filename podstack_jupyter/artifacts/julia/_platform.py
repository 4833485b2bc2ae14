"""Platforms as Julia's ``Base.BinaryPlatforms`` describes them, and Pkg's choice among entries.

A platform-specific artifact is an array of entries in ``Artifacts.toml``, each with ``os``,
``arch`` and other string keys (``libc``, ``call_abi``, ``libgfortran_version``,
``cxxstring_abi``, ``julia_version``, custom tags such as ``cuda``). Pkg keeps the entries whose
tags agree with the host wherever both name a tag (a tag only one side names does not
disqualify), then prefers the entry whose tag set is closest to the host's, then the greatest
triplet (``libgfortran5`` over ``libgfortran4``). This module does the same, as Julia 1.6-1.11
do. The host is described by ``os``, ``arch``, ``libc`` (Linux) and ``call_abi`` (32-bit ARM):
what Python can know; Julia-specific tags (``julia_version``, compiler ABIs) are unknown here
and so never disqualify an entry.
"""

from __future__ import annotations

import os
import platform as _stdlib_platform
import sys

from ...errors import InvalidArgumentError

__all__ = ["Platform", "host_platform", "platforms_match", "select_platform"]

_ARCH_ALIASES = {
    "amd64": "x86_64", "x64": "x86_64", "x86_64": "x86_64",
    "i386": "i686", "i486": "i686", "i586": "i686", "i686": "i686", "x86": "i686",
    "arm64": "aarch64", "aarch64": "aarch64", "armv8l": "aarch64",
    "armv7l": "armv7l", "armv7": "armv7l", "arm": "armv7l", "armv6l": "armv6l",
    "ppc64le": "powerpc64le", "powerpc64le": "powerpc64le", "riscv64": "riscv64",
}
_OS_ALIASES = {"darwin": "macos", "apple": "macos", "mac": "macos", "win32": "windows", "win": "windows"}
# characters Julia refuses in tag names and values
_NONOS = set("+- /<>:\"'\\|?*")
# tags compared as versions: the entry's version must not exceed the host's
_VERSION_CAP = ("os_version", "libstdcxx_version", "cxxlib_version")
# string keys of an entry that are not platform tags
_NOT_TAGS = ("git-tree-sha1", "os", "arch")


def _version_tuple(text: str) -> tuple:
    parts = []
    for piece in text.split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


class Platform:
    """A platform: ``arch``, ``os`` and further tags, lower-cased as Julia stores them.

    ``Platform("x86_64", "linux")`` gets ``libc="glibc"`` as in Julia; 32-bit ARM Linux gets
    ``call_abi="eabihf"``. Any other keyword is a tag: ``Platform("x86_64", "linux", cuda="12.1")``.
    """

    def __init__(self, arch: str, os: str, **tags):
        if not isinstance(arch, str) or not isinstance(os, str) or not arch or not os:
            raise InvalidArgumentError(f"a platform needs an arch and an os (strings), got arch={arch!r}, os={os!r}")
        arch = _ARCH_ALIASES.get(arch.lower(), arch.lower())
        os_name = _OS_ALIASES.get(os.lower(), os.lower())
        values = {"arch": arch, "os": os_name}
        for key, value in tags.items():
            if value is None:
                continue
            key = str(key).lower()
            if key in ("arch", "os"):
                raise InvalidArgumentError(f"platform tag {key!r} given twice")
            values[key] = str(value).lower()
        if os_name == "linux":
            values.setdefault("libc", "glibc")
            if arch in ("armv7l", "armv6l"):
                values.setdefault("call_abi", "eabihf")
        for key, value in values.items():
            bad = _NONOS & set(key) or _NONOS & set(value)
            if bad:
                raise InvalidArgumentError(
                    f"platform tag {key} = {value!r} holds {''.join(sorted(bad))!r}; Julia allows no spaces, '+', "
                    "'-', '/' or other file-name-hostile characters in platform tags (use '_' or '.')")
        self.tags: dict[str, str] = values

    arch = property(lambda self: self.tags["arch"])
    os = property(lambda self: self.tags["os"])

    @classmethod
    def from_entry(cls, entry: dict, where: str = "") -> "Platform":
        """The platform of an ``Artifacts.toml`` entry: ``os``, ``arch`` and its other string keys."""
        missing = [k for k in ("os", "arch") if not isinstance(entry.get(k), str)]
        if missing:
            raise InvalidArgumentError(f"{where}a platform-specific entry lacks {' and '.join(map(repr, missing))}; "
                                       "each entry of an artifact array needs os and arch")
        tags = {k: v for k, v in entry.items() if isinstance(v, str) and k not in _NOT_TAGS}
        try:
            return cls(entry["arch"], entry["os"], **tags)
        except InvalidArgumentError as exc:
            raise InvalidArgumentError(f"{where}{exc.message} (Julia reads every string key of a platform-specific "
                                       "entry as a platform tag)") from None

    def triplet(self) -> str:
        """Julia's triplet, e.g. ``x86_64-linux-gnu-libgfortran5-cxx11``."""
        t = self.tags
        os_part = {"linux": "-linux", "macos": "-apple-darwin", "windows": "-w64-mingw32",
                   "freebsd": "-unknown-freebsd", "openbsd": "-unknown-openbsd"}.get(t["os"], "-" + t["os"])
        libc = {"glibc": "-gnu", "musl": "-musl"}.get(t.get("libc", ""), "")
        text = t["arch"] + os_part + libc + t.get("call_abi", "")
        if "libgfortran_version" in t:
            text += "-libgfortran" + t["libgfortran_version"].split(".")[0]
        if "cxxstring_abi" in t:
            text += "-" + t["cxxstring_abi"]
        version = t.get("libstdcxx_version") or t.get("cxxlib_version")
        if version:
            text += "-libstdcxx" + (version.split(".") + ["0", "0"])[2]
        known = {"arch", "os", "libc", "call_abi", "libgfortran_version", "cxxstring_abi", "libstdcxx_version",
                 "cxxlib_version", "os_version", "cxxlib"}
        for key in sorted(set(t) - known):
            text += f"-{key}+{t[key]}"
        return text

    def __eq__(self, other):
        return isinstance(other, Platform) and self.tags == other.tags

    def __hash__(self):
        return hash(tuple(sorted(self.tags.items())))

    def __repr__(self):
        extra = ", ".join(f"{k}={v!r}" for k, v in sorted(self.tags.items()) if k not in ("arch", "os"))
        return f"Platform({self.arch!r}, {self.os!r}{', ' + extra if extra else ''})"


def _detect_libc() -> str | None:
    name, _ = _stdlib_platform.libc_ver()
    if name == "glibc":
        return "glibc"
    try:
        if any(entry.startswith("ld-musl-") for entry in os.listdir("/lib")):
            return "musl"
    except OSError:
        pass
    return "glibc"


def host_platform() -> Platform:
    """This machine's platform, as far as Python can tell (``os``, ``arch``, ``libc``, ``call_abi``)."""
    if sys.platform.startswith("linux"):
        os_name = "linux"
    elif sys.platform == "darwin":
        os_name = "macos"
    elif sys.platform in ("win32", "cygwin"):
        os_name = "windows"
    elif sys.platform.startswith("freebsd"):
        os_name = "freebsd"
    elif sys.platform.startswith("openbsd"):
        os_name = "openbsd"
    else:
        os_name = sys.platform
    machine = _stdlib_platform.machine() or "unknown"
    return Platform(machine, os_name, libc=_detect_libc() if os_name == "linux" else None)


def _tag_matches(key: str, wanted: str, host: str) -> bool:
    if key in _VERSION_CAP:  # an entry built for an older OS / C++ library runs on a newer one
        return _version_tuple(wanted) <= _version_tuple(host)
    if key == "julia_version":
        return _version_tuple(wanted)[:2] == _version_tuple(host)[:2]
    return wanted == host


def platforms_match(entry: Platform, host: Platform) -> bool:
    """Whether ``entry`` may run on ``host``: every tag both name agrees."""
    return all(_tag_matches(key, value, host.tags[key]) for key, value in entry.tags.items() if key in host.tags)


def select_platform(candidates, host: Platform | None = None):
    """The value paired with the best platform for ``host`` in ``candidates`` (pairs of
    ``(Platform, value)``), or ``None`` when none matches."""
    host = host or host_platform()
    matching = [(p, v) for p, v in candidates if platforms_match(p, host)]
    if not matching:
        return None

    def loss(p: Platform) -> int:
        a, b = set(p.tags), set(host.tags)
        return len(a | b) - len(a & b)

    # fewest differing tags first; among equals the greatest triplet, as Pkg sorts
    best_loss = min(loss(p) for p, _ in matching)
    best = [(p, v) for p, v in matching if loss(p) == best_loss]
    return max(best, key=lambda pv: pv[0].triplet())[1]
