"""git-tree-sha1 of a 10,000-file tree: podstack vs `git add -A && git write-tree` vs fetch-artifacts.

    python bench/bench_tree_hash.py [--files 10000] [--repeat 3]

Builds one tree (nested folders, sizes from a few bytes to a few MB, some executables and
symlinks), checks that all three agree where they should, then times each, page cache warm,
and prints medians and the ratio peer / podstack (above 1: podstack is faster).
fetch-artifacts' `compute_git_tree_sha1` copies the folder into a scratch git repository under
`content/`, so its hash is of that wrapper tree; it is timed as shipped.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from podstack_jupyter.artifacts import compute_git_tree_sha1
from podstack_jupyter.artifacts.julia._treehash import MODE_TREE, tree_object_sha1


def make_tree(root: Path, files: int, seed: int = 7) -> int:
    rng = random.Random(seed)
    folders = [root]
    total = 0
    for i in range(files):
        if rng.random() < 0.08:
            folder = rng.choice(folders) / f"dir{i}"
            folder.mkdir()
            folders.append(folder)
        path = rng.choice(folders) / f"file{i}.dat"
        size = min(int(rng.lognormvariate(7.5, 2.0)), 8 << 20)
        path.write_bytes(rng.randbytes(size))
        total += size
        if rng.random() < 0.05:
            os.chmod(path, 0o755)
        if rng.random() < 0.02:
            os.symlink(path.name, path.with_suffix(".link"))
    return total


def git_hash(tree: Path, scratch: Path) -> str:
    """A fresh repository whose work tree is `tree`: the cost a user pays to ask git."""
    git_dir = scratch / f"git-{time.monotonic_ns()}"
    env = {**os.environ, "GIT_DIR": str(git_dir), "GIT_WORK_TREE": str(tree), "GIT_CONFIG_NOSYSTEM": "1"}
    subprocess.run(["git", "init", "-q"], env=env, check=True)
    subprocess.run(["git", "add", "-A"], cwd=tree, env=env, check=True)
    out = subprocess.run(["git", "write-tree"], cwd=tree, env=env, check=True, capture_output=True, text=True)
    shutil.rmtree(git_dir)
    return out.stdout.strip()


def timed(func, repeat: int):
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = func()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-tree-hash-") as work:
        scratch = Path(work)
        tree = scratch / "tree"
        tree.mkdir()
        total = make_tree(tree, args.files)
        print(f"tree: {args.files} files, {total / 1e6:.0f} MB, {os.cpu_count()} CPUs (a shared machine: compare "
              "ratios from one run)")
        compute_git_tree_sha1(tree)  # warm the page cache for everyone
        ours_t, ours = timed(lambda: compute_git_tree_sha1(tree), args.repeat)
        rows = [("podstack compute_git_tree_sha1", ours_t, ours)]
        if shutil.which("git"):
            git_t, by_git = timed(lambda: git_hash(tree, scratch), args.repeat)
            assert by_git == ours, f"git disagrees: {by_git} != {ours}"
            rows.append(("git add -A && git write-tree", git_t, by_git))
        else:
            print("git is not installed: skipped")
        try:
            import fetch_artifacts
        except ImportError:
            print("fetch-artifacts is not installed (pip install fetch-artifacts): skipped")
        else:
            fa_t, by_fa = timed(lambda: fetch_artifacts.compute_git_tree_sha1(tree), args.repeat)
            wrapper = tree_object_sha1([(b"content", MODE_TREE, bytes.fromhex(ours))]).hex()
            if by_fa != wrapper:  # its copytree follows symlinks, so with links it differs even from the wrapper
                print("fetch-artifacts' hash is neither the tree's nor the content/ wrapper's (it follows symlinks)")
            rows.append(("fetch-artifacts compute_git_tree_sha1", fa_t, by_fa))
        print(f"{'':40} {'median s':>9} {'ratio':>7}")
        for name, seconds, _ in rows:
            print(f"{name:40} {seconds:9.3f} {seconds / ours_t:7.1f}x")


if __name__ == "__main__":
    main()
