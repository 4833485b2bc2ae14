"""Round trips with the fetch-artifacts package (seed 003) where it agrees with Julia, and where it does not.

fetch-artifacts 0.1.0 reads and writes the same Artifacts.toml keys. Its own tree hash copies the
folder into a `content/` folder of a scratch git repository, so it hashes that wrapper tree, not
the folder (Julia would reject its entries unless the archived folder is itself named `content`),
and its installs strip a single top-level folder and add a marker file. The tests pin both sides.
"""

from __future__ import annotations

import os

import pytest

from podstack_jupyter.artifacts import (artifact, bind_artifact, compute_git_tree_sha1, compute_sha256,
                                        create_artifact, load_artifacts)
from podstack_jupyter.artifacts.julia._treehash import MODE_TREE, tree_object_sha1

fa = pytest.importorskip("fetch_artifacts")


def make_data(folder):
    (folder / "tables").mkdir(parents=True)
    (folder / "tables" / "a.csv").write_text("x,y\n1,2\n")
    (folder / "weights.bin").write_bytes(os.urandom(10_000))
    return folder


def test_fetch_artifacts_installs_what_we_publish(tmp_path, server):
    data = make_data(tmp_path / "data")
    made = create_artifact(data, server.root / "d.tar.gz", "gz")
    toml = tmp_path / "Artifacts.toml"
    bind_artifact(toml, "D", made["git_tree_sha1"], f"{server.url}/d.tar.gz", made["sha256"],
                  metadata={"description": "two files"})
    manager = fa.ArtifactManager(toml, cache_dir=tmp_path / "fa-cache")
    assert manager.artifacts["D"].metadata["description"] == "two files"
    installed = manager["D"]
    (installed / ".fetch_artifacts_complete").unlink()  # its own marker, not part of the artifact
    assert compute_git_tree_sha1(installed) == made["git_tree_sha1"]
    assert fa.compute_sha256(server.root / "d.tar.gz") == compute_sha256(server.root / "d.tar.gz")


def test_we_install_what_fetch_artifacts_publishes_where_it_agrees_with_julia(tmp_path, server):
    # a folder named `content`: the one case where its archive and its tree hash describe the same tree
    data = make_data(tmp_path / "content")
    made = fa.create_artifact(data, server.root / "fa.tar.xz", "xz")
    toml = tmp_path / "Artifacts.toml"
    fa.bind_artifact(toml, "FromPeer", made["git_tree_sha1"], f"{server.url}/fa.tar.xz", made["sha256"], lazy=True)
    assert load_artifacts(toml).artifacts["FromPeer"].lazy
    installed = artifact("FromPeer", toml)  # checks sha256 and the tree hash, as Julia would
    assert (installed / "content" / "tables" / "a.csv").read_text() == "x,y\n1,2\n"


def test_where_fetch_artifacts_disagrees_with_julia_its_hash_is_of_a_wrapper_folder(tmp_path):
    data = make_data(tmp_path / "data")
    theirs = fa.compute_git_tree_sha1(data)
    ours = compute_git_tree_sha1(data)
    assert theirs != ours
    wrapper = tree_object_sha1([(b"content", MODE_TREE, bytes.fromhex(ours))]).hex()
    assert theirs == wrapper
