"""The race both artifact stores (local folder, S3) must survive: two writers storing the same blob,
deleting it between rounds so that every round really writes again, while a reader copies it out."""

from __future__ import annotations

import hashlib
import threading

from podstack_jupyter.errors import ArtifactNotFoundError


def writers_and_a_reader(store, payload: bytes, copies, *, rounds: int, reads: int, join_seconds: float) -> str:
    """Run the race on ``store``; fail if a thread raised, a reader saw a partial blob or a put
    answered anything but the blob's (digest, size). Returns the digest."""
    digest = hashlib.sha256(payload).hexdigest()
    errors, results = [], []

    def writer():
        try:
            for _ in range(rounds):
                results.append(store.put_bytes(payload))
                store.delete(digest)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def reader():
        for i in range(reads):
            try:
                out = store.get_file(digest, copies / f"{i}.bin")
            except ArtifactNotFoundError:
                continue  # between a delete and the next put
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)
                return
            if out.read_bytes() != payload:
                errors.append(AssertionError("a reader saw a partial blob"))

    threads = [threading.Thread(target=writer), threading.Thread(target=writer), threading.Thread(target=reader)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(join_seconds)
    assert errors == []
    assert set(results) == {(digest, len(payload))}
    return digest
