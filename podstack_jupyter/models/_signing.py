"""Signed model manifests: which saved models this machine's owner vouches for.

Unpickling is running code. A model folder's manifest (``podstack_model.json``) lists the
sha256 of every file, so a file that does not match is never loaded; but whoever can write
the tracking store and the artifact store could write a matching blob, manifest and rows.
So a manifest also carries a signature: an HMAC-SHA256 of its content, made with a random
key that lives only on the store owner's machine (``<podstack home>/model-signing.key``,
mode 0600, made on first use) and is never sent anywhere, not to a GPU session either.
``save_model`` signs what it writes in the notebook; a GPU session saves unsigned, and the
notebook signs the manifest when the files arrive through it (``registry.log_model`` in a
``%%gpu`` cell). Loading a format that runs code (pickle, sklearn, a whole torch module,
TorchScript) needs a valid signature, unless the caller says ``trusted=True``.

A manifest signed elsewhere (a colleague's machine, another home) does not verify here: load
it with ``trusted=True`` once you know where it came from.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets

from ..errors import ConfigurationError

__all__ = ["KEY_FILE", "sign", "signature_problem", "can_sign"]

KEY_FILE = "model-signing.key"
_ALGORITHM = "hmac-sha256"
_KEY_BYTES = 32

# Inside a GPU session: manifest -> signature_problem's answer, from the notebook (set by models._relay)
remote_check = None


def _in_session() -> bool:
    return os.environ.get("PODSTACK_SESSION") == "1"


def _key(create: bool) -> bytes | None:
    """This machine's signing key (made if ``create`` and missing); never read inside a GPU session."""
    if _in_session():
        return None
    from ..config import private_file, private_folder, settings

    home = settings().home
    path = home / KEY_FILE
    if not path.exists():
        if not create:
            return None
        private_folder(home)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # made meanwhile by another process: read theirs
        else:
            with os.fdopen(fd, "wb") as f:
                f.write(secrets.token_bytes(_KEY_BYTES))
                f.flush()
                os.fsync(f.fileno())
    private_file(path)
    key = path.read_bytes()
    if len(key) != _KEY_BYTES:
        raise ConfigurationError(f"{path} is not a podstack model-signing key ({len(key)} bytes, not {_KEY_BYTES}); "
                                 "remove it to make a new one (models signed with the old key then need trusted=True)")
    return key


def _key_id(key: bytes) -> str:
    return hashlib.sha256(b"podstack-key-id:" + key).hexdigest()[:16]


def _payload(manifest: dict) -> bytes:
    body = {k: v for k, v in manifest.items() if k != "signature"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def can_sign() -> bool:
    """Whether this process holds the key (not inside a GPU session)."""
    return not _in_session()


def sign(manifest: dict) -> dict:
    """``manifest`` with a ``signature`` made with this machine's key (made if missing)."""
    key = _key(create=True)
    if key is None:
        raise ConfigurationError("a GPU session holds no model-signing key; the notebook signs what it logs")
    value = hmac.new(key, _payload(manifest), hashlib.sha256).hexdigest()
    return {**manifest, "signature": {"algorithm": _ALGORITHM, "key_id": _key_id(key), "value": value}}


def signature_problem(manifest: dict) -> str | None:
    """``None`` if ``manifest`` carries a valid signature made with this machine's key, else why not."""
    if _in_session():
        if remote_check is None:
            return "a GPU session cannot check signatures without the notebook"
        return remote_check(manifest)
    signature = manifest.get("signature")
    if signature is None:
        return "it is not signed"
    if not (isinstance(signature, dict) and signature.get("algorithm") == _ALGORITHM
            and isinstance(signature.get("value"), str)):
        return "its signature is not one podstack makes"
    key = _key(create=False)
    if key is None:
        return "this machine has no signing key yet, so nothing here signed it"
    expected = hmac.new(key, _payload(manifest), hashlib.sha256).hexdigest()
    if hmac.compare_digest(expected, signature["value"]):
        return None
    if signature.get("key_id") != _key_id(key):
        return f"it was signed with another key (key id {signature.get('key_id')!r}; this machine's is {_key_id(key)!r})"
    return "its signature does not match its content (the manifest was changed after it was signed)"
