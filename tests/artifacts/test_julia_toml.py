"""Artifacts.toml: finding it, Pkg's layout, metadata, platforms, bind/unbind/add, reproducible archives."""

from __future__ import annotations

import os
import tarfile

from pathlib import Path

import pytest

from podstack_jupyter.artifacts import (Platform, add_artifact, add_download_source, artifact, bind_artifact,
                                        compute_git_tree_sha1, compute_sha256, create_artifact, find_artifacts_toml,
                                        get_artifacts_toml, load_artifacts, select_platform, unbind_artifact)
from podstack_jupyter.artifacts.julia._install import unpack_verified
from podstack_jupyter.errors import ArtifactNotFoundError, InvalidArgumentError

TREE = "339aad93c0f854604248ea3b7c5b7edea20625a9"
SHA = "a" * 64


def test_julia_artifacts_toml_wins_and_the_search_walks_up_to_the_project_top(tmp_path):
    project = tmp_path / "project"
    deep = project / "notebooks" / "deep"
    deep.mkdir(parents=True)
    (project / "pyproject.toml").write_text("")
    assert find_artifacts_toml(deep) is None
    (project / "Artifacts.toml").write_text("")
    assert find_artifacts_toml(deep) == project / "Artifacts.toml"
    (project / "JuliaArtifacts.toml").write_text("")
    assert find_artifacts_toml(deep) == project / "JuliaArtifacts.toml"
    (tmp_path / "Artifacts.toml").write_text("")  # above the project's top: never reached from inside it
    (project / "JuliaArtifacts.toml").unlink()
    (project / "Artifacts.toml").unlink()
    assert find_artifacts_toml(deep) is None
    assert get_artifacts_toml(tmp_path / "Artifacts.toml") == tmp_path / "Artifacts.toml"


def test_artifact_without_a_path_uses_the_current_folder_in_a_notebook(tmp_path, monkeypatch):
    # a notebook cell runs as __main__: the search starts in the current folder
    (tmp_path / "JuliaArtifacts.toml").write_text(f'[X]\ngit-tree-sha1 = "{TREE}"\n')
    monkeypatch.chdir(tmp_path)
    code = compile("from podstack_jupyter.artifacts import load_artifacts\nm = load_artifacts()", "<cell>", "exec")
    namespace = {"__name__": "__main__"}
    exec(code, namespace)
    assert namespace["m"].toml_path == tmp_path / "JuliaArtifacts.toml"


def test_bind_writes_pkg_layout_that_reads_back_with_metadata(tmp_path):
    toml = tmp_path / "Artifacts.toml"
    bind_artifact(toml, "MyEmulator", TREE, "https://example.com/e.tar.xz", SHA, lazy=True,
                  metadata={"description": "Neural network emulator", "version": "2.0", "layers": 3})
    assert toml.read_text() == (
        '[MyEmulator]\n'
        'description = "Neural network emulator"\n'
        f'git-tree-sha1 = "{TREE}"\n'
        'layers = 3\n'
        'lazy = true\n'
        'version = "2.0"\n'
        '\n'
        '    [[MyEmulator.download]]\n'
        f'    sha256 = "{SHA}"\n'
        '    url = "https://example.com/e.tar.xz"\n')
    entry = load_artifacts(toml).artifacts["MyEmulator"]
    assert entry.metadata == {"description": "Neural network emulator", "version": "2.0", "layers": 3}
    assert entry.lazy and entry.git_tree_sha1 == TREE and entry.downloads[0].sha256 == SHA
    with pytest.raises(InvalidArgumentError, match="already binds 'MyEmulator'"):
        bind_artifact(toml, "MyEmulator", TREE)
    bind_artifact(toml, "MyEmulator", "b" * 40, force=True)
    assert load_artifacts(toml).artifacts["MyEmulator"].git_tree_sha1 == "b" * 40  # the file is read again


def test_mirrors_and_unbind(tmp_path):
    toml = tmp_path / "Artifacts.toml"
    bind_artifact(toml, "A", TREE, "https://one/a.tgz", SHA)
    add_download_source(toml, "A", "https://two/a.tgz", SHA)
    assert [d.url for d in load_artifacts(toml).artifacts["A"].downloads] == ["https://one/a.tgz", "https://two/a.tgz"]
    assert unbind_artifact(toml, "A") is True and unbind_artifact(toml, "A") is False
    assert load_artifacts(toml).artifacts == {}


@pytest.mark.parametrize("bad, message", [
    ('[A]\nlazy = true\n', "has no git-tree-sha1"),
    ('[A]\ngit-tree-sha1 = "xyz"\n', "40 hex"),
    (f'[A]\ngit-tree-sha1 = "{TREE}"\n[[A.download]]\nsha256 = "{SHA}"\n', "needs a url"),
    (f'[[A]]\ngit-tree-sha1 = "{TREE}"\narch = "x86_64"\n', "lacks 'os'"),
    ('[A\n', "not valid TOML"),
])
def test_malformed_files_are_named(tmp_path, bad, message):
    toml = tmp_path / "Artifacts.toml"
    toml.write_text(bad)
    with pytest.raises(InvalidArgumentError, match=message):
        load_artifacts(toml)


def _platform_toml(tmp_path):
    toml = tmp_path / "Artifacts.toml"
    variants = {
        "1" * 40: Platform("x86_64", "linux", libgfortran_version="4.0.0"),
        "2" * 40: Platform("x86_64", "linux", libgfortran_version="5.0.0"),
        "3" * 40: Platform("aarch64", "linux"),
        "4" * 40: Platform("x86_64", "linux", libc="musl"),
        "5" * 40: Platform("aarch64", "macos"),
        "6" * 40: Platform("x86_64", "windows"),
    }
    for tree, platform in variants.items():
        bind_artifact(toml, "Lib", tree, f"https://x/{tree}.tgz", SHA, platform=platform)
    return toml


def test_platform_specific_entries_choose_as_pkg_does(tmp_path):
    toml = _platform_toml(tmp_path)
    text = toml.read_text()
    assert text.count("[[Lib]]") == 6 and 'libc = "glibc"' in text and 'os = "linux"' in text
    pick = lambda **p: load_artifacts(toml, platform=p).artifacts["Lib"].git_tree_sha1  # noqa: E731
    assert pick(os="linux", arch="x86_64") == "2" * 40  # libgfortran5 over 4 (the greater triplet)
    assert pick(os="linux", arch="x86_64", libgfortran_version="4.0.0") == "1" * 40
    assert pick(os="linux", arch="x86_64", libc="musl") == "4" * 40
    assert pick(os="linux", arch="arm64") == "3" * 40  # arch names normalised as Julia does
    assert pick(os="macos", arch="aarch64") == "5" * 40
    assert pick(os="windows", arch="amd64") == "6" * 40
    with pytest.raises(ArtifactNotFoundError, match="no entry for this platform.*x86_64-linux-gnu"):
        artifact("Lib", toml, platform={"os": "freebsd", "arch": "x86_64"})
    # the host's own choice exists on this machine's kind of platform
    assert load_artifacts(toml).platform.os in ("linux", "macos", "windows", "freebsd")
    assert unbind_artifact(toml, "Lib", platform=Platform("aarch64", "macos"))
    assert toml.read_text().count("[[Lib]]") == 5


def test_platform_helpers():
    assert Platform("armv7l", "linux").triplet() == "armv7l-linux-gnueabihf"
    assert Platform("x86_64", "linux", libgfortran_version="5.0.0", cxxstring_abi="cxx11").triplet() == \
        "x86_64-linux-gnu-libgfortran5-cxx11"
    assert Platform("aarch64", "darwin").triplet() == "aarch64-apple-darwin"
    assert select_platform([(Platform("x86_64", "linux"), "a")], Platform("aarch64", "linux")) is None
    with pytest.raises(InvalidArgumentError, match="platform tag"):
        Platform("x86_64", "linux", cuda="12 .1")


def test_reproducible_archives_in_every_compression(tmp_path):
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "sub" / "b.txt").write_text("b")
    (data / "a.bin").write_bytes(os.urandom(5000))
    (data / "empty").mkdir()
    os.symlink("sub/b.txt", data / "link")
    long_name = data / ("d" * 90) / ("n" * 90)
    long_name.mkdir(parents=True)
    (long_name / ("f" * 120)).write_text("long path")  # needs a pax path record
    for compression, magic in (("xz", b"\xfd7zXZ"), ("gz", b"\x1f\x8b"), ("bz2", b"BZh"), ("zstd", b"\x28\xb5\x2f\xfd"),
                               (None, None)):
        first = create_artifact(data, tmp_path / f"1-{compression}", compression)
        os.utime(data / "a.bin", (0, 1234567))  # times and owners are not in the archive
        second = create_artifact(data, tmp_path / f"2-{compression}", compression)
        assert first["sha256"] == second["sha256"] == compute_sha256(second["archive_path"])
        assert first["git_tree_sha1"] == compute_git_tree_sha1(data)
        # and it unpacks (compression found from its bytes) to the same tree
        assert unpack_verified(Path(first["archive_path"]), tmp_path / f"out-{compression}", first["git_tree_sha1"])
        if magic:
            with open(first["archive_path"], "rb") as f:
                assert f.read(len(magic)) == magic
    with tarfile.open(tmp_path / "1-None") as tf:  # what other tools see: sorted, zeroed, content at the root
        members = tf.getmembers()
        assert [m.name for m in members][:2] == ["a.bin", "d" * 90]
        assert all(m.mtime == 0 and m.uid == 0 and m.uname == "" for m in members)
        assert any(m.name.endswith("f" * 120) for m in members)
    with pytest.raises(InvalidArgumentError, match="inside the folder"):
        create_artifact(data, data / "self.tar.gz", "gz")
    with pytest.raises(InvalidArgumentError, match="unknown compression"):
        create_artifact(data, tmp_path / "x", "rar")


def test_add_artifact_downloads_hashes_binds_and_can_keep_the_tree(tmp_path, server):
    data = tmp_path / "data"
    data.mkdir()
    (data / "x.csv").write_text("a,b\n1,2\n")
    made = create_artifact(data, server.root / "x.tar.gz", "gz")
    toml = tmp_path / "Artifacts.toml"
    info = add_artifact(toml, "X", f"{server.url}/x.tar.gz", clear=False)
    assert info == {"git_tree_sha1": made["git_tree_sha1"], "sha256": made["sha256"], "url": f"{server.url}/x.tar.gz"}
    assert load_artifacts(toml).exists("X")  # clear=False left it installed
    assert (artifact("X", toml) / "x.csv").read_text() == "a,b\n1,2\n" and server.hits["/x.tar.gz"] == 1
    with pytest.raises(InvalidArgumentError, match="already binds"):
        add_artifact(toml, "X", f"{server.url}/x.tar.gz")
