"""The podstack home, the SQLite database (with its WAL) and the artifact store are the user's alone:
folders 0700, files 0600 (blobs read-only 0400), whatever the umask, including files made later."""

from __future__ import annotations

import os
import stat

import pytest

from podstack_jupyter import config, registry
from podstack_jupyter.models import _signing


@pytest.fixture
def open_umask():
    """The loosest umask: privacy must not depend on the user's."""
    previous = os.umask(0)
    yield
    os.umask(previous)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def private(path) -> bool:
    return mode(path) & 0o077 == 0


def log_a_bit(tmp_path, name="r"):
    (tmp_path / f"{name}.txt").write_text(name)
    with registry.start_run(name):
        registry.log_metric("loss", 0.5)
        registry.log_artifact(tmp_path / f"{name}.txt")
        registry.log_model({"w": name}, framework="pickle")


def test_everything_podstack_keeps_is_private(podstack_home, store_url, tmp_path, open_umask):
    log_a_bit(tmp_path)
    assert mode(podstack_home) == 0o700
    artifacts = podstack_home / "artifacts"
    folders = [artifacts, *(p for p in artifacts.rglob("*") if p.is_dir())]
    blobs = [p for p in artifacts.rglob("*") if p.is_file()]
    assert len(blobs) >= 3 and all(mode(f) == 0o700 for f in folders)
    assert all(mode(b) == 0o400 for b in blobs)  # read-only, and the user's alone
    assert mode(podstack_home / _signing.KEY_FILE) == 0o600
    if store_url.startswith("sqlite"):
        database = podstack_home / "podstack.db"
        wal, shm = database.with_name("podstack.db-wal"), database.with_name("podstack.db-shm")
        assert wal.exists() and shm.exists()  # WAL mode, with the store open
        assert (mode(database), mode(wal), mode(shm)) == (0o600, 0o600, 0o600)
    log_a_bit(tmp_path, "later")  # files made later are private too
    assert registry.load_model(registry.register_model("m", run_id=registry.search_runs()[0].id).name) == {"w": "later"}
    assert all(private(p) for p in podstack_home.rglob("*") if p.is_file())
    assert all(mode(p) == 0o700 for p in [*artifacts.rglob("*"), *(podstack_home / "model-cache").rglob("*")]
               if p.is_dir())


def test_a_home_an_older_version_left_open_is_made_private(podstack_home, store_url, tmp_path, open_umask):
    registry._reset_store()
    podstack_home.mkdir(parents=True, exist_ok=True)
    os.chmod(podstack_home, 0o755)
    database = podstack_home / "podstack.db"
    database.touch()
    os.chmod(database, 0o644)
    config.reset()
    log_a_bit(tmp_path)
    assert mode(podstack_home) == 0o700
    if store_url.startswith("sqlite"):
        assert mode(database) == 0o600


def test_private_folder_and_file_helpers(tmp_path, open_umask):
    folder = config.private_folder(tmp_path / "a" / "b")
    assert mode(tmp_path / "a") == 0o700 and mode(folder) == 0o700
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o777)
    config.private_folder(loose, tighten=False)
    assert mode(loose) == 0o777  # a folder the user chose to share stays shared unless asked
    config.private_folder(loose)
    assert mode(loose) == 0o700
    made = config.private_file(tmp_path / "f")
    assert made.read_bytes() == b"" and mode(made) == 0o600
    os.chmod(made, 0o644)
    config.private_file(made)
    assert mode(made) == 0o600
