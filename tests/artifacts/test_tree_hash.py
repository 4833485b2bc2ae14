"""git-tree-sha1 as Julia's Pkg computes it: the known vectors, and git itself on random trees."""

import os
import random
import shutil
import subprocess

import pytest

from podstack_jupyter.artifacts import compute_git_tree_sha1, compute_sha256
from podstack_jupyter.errors import InvalidArgumentError

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def test_known_vectors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert compute_git_tree_sha1(empty) == "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
    one = tmp_path / "one"
    one.mkdir()
    (one / "foo").write_bytes(b"Hello, world!")
    assert compute_git_tree_sha1(one) == "339aad93c0f854604248ea3b7c5b7edea20625a9"
    two = tmp_path / "two"
    two.mkdir()
    (two / "foo1").write_bytes(b"Hello")
    (two / "foo2").write_bytes(b"world!")
    assert compute_git_tree_sha1(two) == "98cda294312216b19e2a973e9c291c0f5181c98c"


def test_empty_folders_and_dot_git_are_left_out_as_pkg_does(tmp_path):
    (tmp_path / "foo").write_bytes(b"Hello, world!")
    (tmp_path / "empty" / "deeper").mkdir(parents=True)
    (tmp_path / ".git" / "objects").mkdir(parents=True)
    (tmp_path / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    assert compute_git_tree_sha1(tmp_path) == "339aad93c0f854604248ea3b7c5b7edea20625a9"
    # a folder holding only a .git with content is kept, as an empty tree (Pkg's contains_files counts .git)
    (tmp_path / "sub" / ".git").mkdir(parents=True)
    (tmp_path / "sub" / ".git" / "x").write_text("x")
    assert compute_git_tree_sha1(tmp_path) != "339aad93c0f854604248ea3b7c5b7edea20625a9"


def test_executable_bit_and_symlinks_change_the_hash_and_links_are_not_followed(tmp_path):
    (tmp_path / "run.sh").write_bytes(b"#!/bin/sh\n")
    plain = compute_git_tree_sha1(tmp_path)
    os.chmod(tmp_path / "run.sh", 0o744)
    executable = compute_git_tree_sha1(tmp_path)
    assert executable != plain
    os.chmod(tmp_path / "run.sh", 0o644 | 0o011)  # group/other execute bits do not count, as in git
    assert compute_git_tree_sha1(tmp_path) == plain
    outside = tmp_path.parent / "outside-target"
    outside.mkdir(exist_ok=True)
    (outside / "big").write_bytes(b"x" * 1000)
    os.symlink(str(outside), tmp_path / "link")
    with_link = compute_git_tree_sha1(tmp_path)
    (outside / "big").write_bytes(b"changed")
    assert compute_git_tree_sha1(tmp_path) == with_link  # the target's bytes are hashed, not what it points to


def test_bad_input_is_named(tmp_path):
    with pytest.raises(InvalidArgumentError, match="does not exist"):
        compute_git_tree_sha1(tmp_path / "nope")
    (tmp_path / "f").write_text("x")
    with pytest.raises(InvalidArgumentError, match="is not a folder"):
        compute_git_tree_sha1(tmp_path / "f")
    with pytest.raises(InvalidArgumentError, match="is not a file"):
        compute_sha256(tmp_path)
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(InvalidArgumentError, match="pipe"):
        compute_git_tree_sha1(tmp_path)


def test_sha256_of_a_file(tmp_path):
    (tmp_path / "a").write_bytes(b"abc")
    assert compute_sha256(tmp_path / "a") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def _random_tree(root, rng: random.Random, n_files: int):
    """Nested folders, executables, symlinks (to files, folders, nowhere), empty folders, names that
    sort differently as `name/` (a, a.b, a-b, a0), non-ASCII names and files large enough for the thread pool."""
    names = ["a", "a.b", "a-b", "a0", "b", "Z", "é", "日本", "x y", "_", "a+b"]
    dirs = [root]
    for i in range(n_files):
        parent = rng.choice(dirs)
        name = rng.choice(names) + (str(i) if rng.random() < 0.5 else "")
        path = parent / name
        if path.exists() or path.is_symlink():
            continue
        kind = rng.random()
        if kind < 0.2:
            path.mkdir()
            dirs.append(path)
        elif kind < 0.25:
            (path / "empty" / "deeper").mkdir(parents=True)  # no file below: skipped by both
        elif kind < 0.32:
            os.symlink(rng.choice(["../a", "a.b", "nowhere/at/all", "é"]), path)
        else:
            size = rng.choice([0, 1, 100, 5000, 1 << 20, (3 << 20) + 7])
            path.write_bytes(rng.randbytes(size))
            if rng.random() < 0.3:
                os.chmod(path, 0o755)
    # the names that sort differently as folders, side by side in one place
    (root / "s").mkdir()
    (root / "s" / "a").mkdir()
    (root / "s" / "a" / "f").write_text("in folder a")
    for sibling in ("a.b", "a-b", "a0"):
        (root / "s" / sibling).write_text(sibling)


def _git_write_tree(root) -> str:
    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(root.parent), "GIT_DIR": str(root.parent / "gitdir"),
           "GIT_WORK_TREE": str(root)}
    subprocess.run(["git", "init", "-q"], env=env, check=True)
    subprocess.run(["git", "-c", "core.fileMode=true", "-c", "core.symlinks=true", "add", "-A"], cwd=root, env=env,
                   check=True)
    return subprocess.run(["git", "write-tree"], cwd=root, env=env, check=True, capture_output=True,
                          text=True).stdout.strip()


@needs_git
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_agrees_with_git_write_tree_on_random_trees(tmp_path, seed):
    root = tmp_path / "tree"
    root.mkdir()
    _random_tree(root, random.Random(seed), 120)
    assert compute_git_tree_sha1(root) == _git_write_tree(root)
