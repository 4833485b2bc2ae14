"""What a ``podstack server`` is started with (the options of ``podstack server``)."""

from __future__ import annotations

import dataclasses
import os

__all__ = ["ServerConfig"]


@dataclasses.dataclass
class ServerConfig:
    """``db``: the tracking database URL (``sqlite:///...`` or ``postgresql://...``); ``artifacts``:
    a folder or ``s3://bucket/prefix`` (endpoint and credentials from the usual AWS variables).
    Both default to the embedded store of the podstack home, whose records are then the project
    ``default``.

    ``secret_file``: the server's secret (default ``<home>/server-secret``; see
    :mod:`.accounts`). ``rate``/``burst``: requests a second per API key and the burst allowed
    (``rate=0``: no limit). ``upload_expires``/``download_expires``: seconds a signed URL lives.
    ``backend``: the compute backend team sessions are placed on (default: the server's
    ``PODSTACK_BACKEND``, else ``local``); ``kernel_grace``: seconds a team session lives on
    without a notebook attached.
    """

    db: str | None = None
    artifacts: str | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    secret_file: str | None = None
    rate: float = 200.0
    burst: float | None = 1000.0
    upload_expires: int = 900
    download_expires: int = 300
    graceful_timeout: float = 30.0
    sweep_interval: float = 600.0
    backend: str | None = None
    kernel_grace: float = 60.0

    def resolved(self) -> "ServerConfig":
        """A copy with the database and artifact root filled in from the podstack settings."""
        from ..config import settings

        s = settings()
        db = self.db or (s.tracking_uri if s.tracking_uri else f"sqlite:///{s.home / 'podstack.db'}")
        artifacts = self.artifacts or s.artifact_url
        if "://" not in artifacts:
            artifacts = os.path.abspath(os.path.expanduser(artifacts))
        return dataclasses.replace(self, db=db, artifacts=artifacts)
