"""artifact(): lazy installs over real HTTP, mirrors, retries, checks, safe unpacking, two processes at once."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest

from podstack_jupyter.artifacts import (artifact, artifact_exists, bind_artifact, clear_artifact_cache,
                                        compute_git_tree_sha1, compute_sha256, create_artifact, get_cache_dir,
                                        load_artifacts, set_cache_dir)
from podstack_jupyter.errors import (ArtifactInstallError, ArtifactNotFoundError, TreeHashMismatchError,
                                     UnsafeArchiveError)


def make_data(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "weights.bin").write_bytes(os.urandom(300_000))
    (folder / "config").mkdir(exist_ok=True)
    (folder / "config" / "model.json").write_text('{"layers": 3}')
    (folder / "bin").mkdir(exist_ok=True)
    (folder / "bin" / "tool").write_text("#!/bin/sh\necho hi\n")
    os.chmod(folder / "bin" / "tool", 0o755)
    os.symlink("config/model.json", folder / "model.json")
    return folder


@pytest.fixture
def published(tmp_path, server):
    """A data folder, its archive served at /data.tar.gz, and an Artifacts.toml binding it."""
    data = make_data(tmp_path / "data")
    made = create_artifact(data, server.root / "data.tar.gz", "gz")
    toml = tmp_path / "project" / "Artifacts.toml"
    bind_artifact(toml, "MyData", made["git_tree_sha1"], f"{server.url}/data.tar.gz", made["sha256"])
    return data, made, toml


def test_first_use_downloads_checks_and_installs_then_reuses(published, server):
    data, made, toml = published
    assert not artifact_exists("MyData", toml)
    path = artifact("MyData", toml)
    assert path == get_cache_dir() / made["git_tree_sha1"]
    assert compute_git_tree_sha1(path) == made["git_tree_sha1"]
    assert (path / "config" / "model.json").read_text() == '{"layers": 3}'
    assert os.readlink(path / "model.json") == "config/model.json" and os.access(path / "bin" / "tool", os.X_OK)
    assert artifact_exists("MyData", toml) and artifact_exists(made["git_tree_sha1"])
    assert artifact("MyData/config/model.json", toml) == path / "config" / "model.json"
    assert artifact("MyData", toml) == path and server.hits["/data.tar.gz"] == 1
    # the installed tree is read-only: its content must stay what its name says
    assert not os.stat(path / "weights.bin").st_mode & 0o222
    assert not os.stat(path / "config").st_mode & 0o222


def test_mirror_fallback_after_the_first_url_fails(tmp_path, server):
    data = make_data(tmp_path / "data")
    made = create_artifact(data, server.root / "good.tar.xz", "xz")
    toml = tmp_path / "Artifacts.toml"
    bind_artifact(toml, "D", made["git_tree_sha1"], download_info=[
        (f"{server.url}/missing.tar.xz", made["sha256"]),
        ("http://127.0.0.1:9/refused.tar.xz", made["sha256"]),  # nothing listens on port 9
        (f"{server.url}/good.tar.xz", made["sha256"])])
    path = artifact("D", toml)
    assert compute_git_tree_sha1(path) == made["git_tree_sha1"]
    assert server.hits["/missing.tar.xz"] == 1  # a 404 is not retried: the next mirror gets its turn


def test_transient_errors_are_retried_on_the_same_url(published, server):
    _, made, toml = published
    server.fail_times["/data.tar.gz"] = 2
    assert compute_git_tree_sha1(artifact("MyData", toml)) == made["git_tree_sha1"]
    assert server.hits["/data.tar.gz"] == 3


def test_a_corrupted_download_is_refused_and_nothing_is_installed(published, server):
    _, made, toml = published
    archive = server.root / "data.tar.gz"
    blob = bytearray(archive.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    archive.write_bytes(bytes(blob))
    with pytest.raises(ArtifactInstallError, match="sha256 mismatch") as info:
        artifact("MyData", toml)
    assert info.value.attempts[0][0].endswith("/data.tar.gz")
    assert not artifact_exists("MyData", toml)
    assert [p.name for p in get_cache_dir().iterdir() if not p.name.startswith(".")] == []


def test_tree_hash_mismatch_is_an_error_never_a_silent_install(tmp_path, server):
    data = make_data(tmp_path / "data")
    made = create_artifact(data, server.root / "data.tar.gz", "gz")
    toml = tmp_path / "Artifacts.toml"
    wrong = "0" * 40
    bind_artifact(toml, "D", wrong, f"{server.url}/data.tar.gz", made["sha256"])
    with pytest.raises(ArtifactInstallError, match="Tree Hash Mismatch") as info:
        artifact("D", toml)
    error = info.value.attempts[0][1]
    assert isinstance(error, TreeHashMismatchError) and error.calculated == made["git_tree_sha1"]
    assert not (get_cache_dir() / wrong).exists() and not (get_cache_dir() / made["git_tree_sha1"]).exists()


def _tarball(path: Path, members):
    with tarfile.open(path, "w:gz") as tf:
        for info, data in members:
            tf.addfile(info, io.BytesIO(data) if data is not None else None)


def _file(name, data=b"x"):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _link(name, target, kind=tarfile.SYMTYPE):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info, None


@pytest.mark.parametrize("members, what", [
    ([_file("ok"), _file("../escape")], "'..'"),
    ([_file("/etc/evil")], "absolute"),
    ([_file("a/../../escape")], "'..'"),
    ([_link("up", "../../outside")], "outside"),
    ([_link("abs", "/etc/passwd")], "absolute"),
    ([_link("d", "."), _link("e", "d/..")], "outside"),  # lexically inside, really the parent: a chain of links
    ([_link("dir", "/tmp"), _file("dir/planted")], "absolute"),
    ([_link("sub", "."), _file("sub/x")], "through the symlink"),
    ([_link("hard", "/etc/passwd", tarfile.LNKTYPE)], "absolute"),
])
def test_a_tarball_with_a_path_escaping_member_is_refused(tmp_path, server, members, what):
    _tarball(server.root / "evil.tar.gz", members)
    toml = tmp_path / "Artifacts.toml"
    bind_artifact(toml, "Evil", "1" * 40, f"{server.url}/evil.tar.gz", compute_sha256(server.root / "evil.tar.gz"))
    with pytest.raises(ArtifactInstallError) as info:
        artifact("Evil", toml)
    error = info.value.attempts[0][1]
    assert isinstance(error, UnsafeArchiveError) and what in error.message
    assert not (tmp_path.parent / "escape").exists() and not (tmp_path / "escape").exists()
    assert [p.name for p in get_cache_dir().iterdir() if not p.name.startswith(".")] == []


def test_special_members_are_refused(tmp_path, server):
    fifo = tarfile.TarInfo("pipe")
    fifo.type = tarfile.FIFOTYPE
    _tarball(server.root / "fifo.tar.gz", [(fifo, None)])
    toml = tmp_path / "Artifacts.toml"
    bind_artifact(toml, "F", "1" * 40, f"{server.url}/fifo.tar.gz", compute_sha256(server.root / "fifo.tar.gz"))
    with pytest.raises(ArtifactInstallError, match="named pipe"):
        artifact("F", toml)


def test_tarballs_made_by_other_tools_install(tmp_path, server):
    """`tar -C dir -czf x.tgz .` style: ./ prefixes, a root entry, bzip2 detected by its magic bytes."""
    data = make_data(tmp_path / "data")
    expected = compute_git_tree_sha1(data)
    archive = server.root / "other.bin"  # no suffix: compression comes from the bytes
    with tarfile.open(archive, "w:bz2") as tf:
        tf.add(data, arcname=".")
    toml = tmp_path / "Artifacts.toml"
    bind_artifact(toml, "O", expected, f"{server.url}/other.bin", compute_sha256(archive))
    assert compute_git_tree_sha1(artifact("O", toml)) == expected


def test_set_cache_dir_takes_effect_immediately(published, tmp_path):
    _, made, toml = published
    manager = load_artifacts(toml)
    first = manager["MyData"]
    set_cache_dir(tmp_path / "other-cache")
    assert not manager.exists("MyData")
    second = manager["MyData"]
    assert second == tmp_path / "other-cache" / made["git_tree_sha1"] and second != first
    assert clear_artifact_cache("MyData", toml) == ["MyData"] and not second.exists()
    assert first.exists()  # the other cache is untouched
    set_cache_dir(None)
    assert clear_artifact_cache() == [made["git_tree_sha1"]] and not first.exists()


def test_unknown_names_and_missing_downloads_are_explained(tmp_path):
    toml = tmp_path / "Artifacts.toml"
    bind_artifact(toml, "NoSource", "2" * 40)
    with pytest.raises(ArtifactNotFoundError, match=r"no artifact 'Nope'.*NoSource"):
        artifact("Nope", toml)
    with pytest.raises(ArtifactInstallError, match="no \\[\\[NoSource.download\\]\\] entry"):
        artifact("NoSource", toml)


def test_lazy_artifacts_wait_for_first_use(tmp_path, server):
    data = make_data(tmp_path / "data")
    made = create_artifact(data, server.root / "d.tar.gz", "gz")
    other = tmp_path / "other"
    other.mkdir()
    (other / "x").write_text("eager")
    made2 = create_artifact(other, server.root / "e.tar.gz", "gz")
    toml = tmp_path / "Artifacts.toml"
    bind_artifact(toml, "Lazy", made["git_tree_sha1"], f"{server.url}/d.tar.gz", made["sha256"], lazy=True)
    bind_artifact(toml, "Eager", made2["git_tree_sha1"], f"{server.url}/e.tar.gz", made2["sha256"])
    assert "lazy = true" in toml.read_text()
    manager = load_artifacts(toml)
    assert manager.artifacts["Lazy"].lazy and not manager.artifacts["Eager"].lazy
    assert set(manager.ensure_installed()) == {"Eager"}
    assert server.hits["/d.tar.gz"] == 0 and not manager.exists("Lazy")
    assert artifact("Lazy", toml).is_dir() and server.hits["/d.tar.gz"] == 1


_INSTALLER = textwrap.dedent("""
    import sys
    from podstack_jupyter.artifacts import artifact, compute_git_tree_sha1, set_cache_dir
    set_cache_dir(sys.argv[2])
    path = artifact("MyData", sys.argv[1])
    print(compute_git_tree_sha1(path))
""")

_WATCHER = textwrap.dedent("""
    import os, sys, time
    from podstack_jupyter.artifacts import compute_git_tree_sha1
    target = os.path.join(sys.argv[1], sys.argv[2])
    deadline = time.time() + 120
    while not os.path.isdir(target):
        if time.time() > deadline:
            sys.exit("never appeared")
        time.sleep(0.002)
    print(compute_git_tree_sha1(target))   # hashed the instant it appears: must already be whole
""")


def test_two_processes_installing_at_once_both_succeed_and_see_whole_trees(published, server, tmp_path):
    _, made, toml = published
    server.delay = 0.5  # both processes are surely waiting while the first download runs
    cache = tmp_path / "shared-cache"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    watcher = subprocess.Popen([sys.executable, "-c", _WATCHER, str(cache), made["git_tree_sha1"]],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    installers = [subprocess.Popen([sys.executable, "-c", _INSTALLER, str(toml), str(cache)],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
                  for _ in range(2)]
    for p in installers + [watcher]:
        out, err = p.communicate(timeout=180)
        assert p.returncode == 0, err
        assert out.strip() == made["git_tree_sha1"]
    assert server.hits["/data.tar.gz"] == 1  # the lock made the second process wait and reuse
