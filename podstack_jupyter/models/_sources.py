"""Where a model's files come from and go to, outside the content-addressed artifact store.

- **S3-compatible storage** by URI: ``s3://bucket/key?endpoint=http://host:port&defaultRegion=r``
  (the form the Kubeflow Model Registry client writes; without ``endpoint`` the usual AWS
  settings apply: ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``, ``AWS_REGION``, credentials
  from ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` or ``AWS_PROFILE``). Uploads write plain
  keys under a prefix; downloads copy every object under a key (or the one object it names).
- **Hugging Face Hub** through ``huggingface_hub`` (its endpoint, cache, token and offline mode:
  ``HF_ENDPOINT``, ``HF_HUB_CACHE``, ``HF_TOKEN``, ``HF_HUB_OFFLINE=1``). A file's URI is the hub's
  ``<endpoint>/<repo>/resolve/<revision>/<path>``, a folder's ``<endpoint>/<repo>/tree/<revision>/<path>``.
- **Local** files: a path or a ``file://`` URL.

Credentials given for an upload are used for it and never stored.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

from ..errors import ArtifactNotFoundError, ConfigurationError, InvalidArgumentError, ModelSourceError, PodstackError

__all__ = ["S3Params", "s3_uri", "parse_s3_uri", "upload_to_s3", "download_s3", "hf_repo_info", "hf_uri",
           "hf_snapshot", "download_uri", "copy_local"]


@dataclasses.dataclass
class S3Params:
    """Where ``upload_artifact_and_register_model`` puts a model's files: ``s3://bucket_name/s3_prefix``.

    ``endpoint_url`` for a server other than AWS (recorded in the version's URI so it can be
    downloaded again); ``access_key_id`` / ``secret_access_key`` (used for this upload only,
    never stored; default: the AWS environment); ``region``.
    """

    bucket_name: str
    s3_prefix: str
    endpoint_url: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    region: str | None = None

    def __repr__(self):  # never show the secret
        return (f"S3Params(bucket_name={self.bucket_name!r}, s3_prefix={self.s3_prefix!r}, "
                f"endpoint_url={self.endpoint_url!r}, region={self.region!r})")


# -- S3 -----------------------------------------------------------------------------------------
def s3_uri(bucket: str, key: str, endpoint: str | None = None, region: str | None = None) -> str:
    """``s3://bucket/key`` with the endpoint and region as query arguments when given."""
    query = {k: v for k, v in (("endpoint", endpoint), ("defaultRegion", region)) if v}
    return f"s3://{bucket}/{quote(key.strip('/'), safe='/')}" + (f"?{urlencode(query)}" if query else "")


def parse_s3_uri(uri: str) -> tuple[str, str, str | None, str | None]:
    """``(bucket, key, endpoint, region)`` of an ``s3://`` URI."""
    parts = urlsplit(uri)
    if parts.scheme.lower() != "s3" or not parts.netloc:
        raise InvalidArgumentError(f"{uri!r} is not an s3:// URI (s3://bucket/key)")
    query = parse_qs(parts.query)
    unknown = set(query) - {"endpoint", "defaultRegion"}
    if unknown:
        raise InvalidArgumentError(f"{uri!r}: unknown query argument(s) {sorted(unknown)}; only endpoint and "
                                   "defaultRegion are understood")
    return (parts.netloc, unquote(parts.path).strip("/"), (query.get("endpoint") or [None])[0],
            (query.get("defaultRegion") or [None])[0])


def _s3_client(endpoint=None, access_key_id=None, secret_access_key=None, region=None):
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise ConfigurationError("S3 storage needs boto3, which is not installed: pip install "
                                 "'podstack-jupyter[s3]'") from None
    endpoint = endpoint or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None
    if bool(access_key_id) != bool(secret_access_key):
        raise InvalidArgumentError("give both access_key_id and secret_access_key, or neither (to use the AWS "
                                   "environment)")
    session = boto3.session.Session()
    config = Config(signature_version="s3v4", s3={"addressing_style": "path" if endpoint else "auto"},
                    connect_timeout=10, read_timeout=120)
    return session.client("s3", endpoint_url=endpoint, region_name=region or os.environ.get("AWS_REGION")
                          or session.region_name or "us-east-1", aws_access_key_id=access_key_id or None,
                          aws_secret_access_key=secret_access_key or None, config=config)


def _s3_failure(exc, action: str, where: str) -> PodstackError:
    from botocore import exceptions as bx

    if isinstance(exc, (bx.NoCredentialsError, bx.PartialCredentialsError)):
        return ConfigurationError(f"no S3 credentials for {where}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                                  f"(or pass them) ({exc})")
    if isinstance(exc, (bx.EndpointConnectionError, bx.ConnectTimeoutError)):
        return ConfigurationError(f"cannot reach the S3 endpoint while {action} {where}: {exc}")
    if isinstance(exc, bx.ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        if code == "NoSuchBucket":
            return ConfigurationError(f"{where}: the bucket does not exist; create it first")
        return ConfigurationError(f"S3 refused {action} {where} ({code}: {exc})")
    return ConfigurationError(f"S3 failed while {action} {where}: {exc}")


def _files_of(local_path: Path) -> list[tuple[Path, str]]:
    """``(file, path relative to local_path)``; a single file is its own name."""
    if local_path.is_file():
        return [(local_path, local_path.name)]
    return [(p, p.relative_to(local_path).as_posix()) for p in sorted(local_path.rglob("*")) if p.is_file()]


def upload_to_s3(local_path, params: S3Params) -> str:
    """Copy a file or every file of a folder under ``s3://bucket/prefix/``; returns the URI of the prefix."""
    from botocore import exceptions as bx

    source = Path(local_path)
    if not source.exists():
        raise InvalidArgumentError(f"model_files_path {os.fspath(local_path)!r} does not exist")
    files = _files_of(source)
    if not files:
        raise InvalidArgumentError(f"model_files_path {os.fspath(local_path)!r} holds no files")
    prefix = (params.s3_prefix or "").strip("/")
    client = _s3_client(params.endpoint_url, params.access_key_id, params.secret_access_key, params.region)
    where = f"s3://{params.bucket_name}/{prefix}"
    try:
        for path, relative in files:
            client.upload_file(str(path), params.bucket_name, f"{prefix}/{relative}" if prefix else relative)
    except (bx.BotoCoreError, bx.ClientError) as exc:
        raise _s3_failure(exc, "uploading to", where) from None
    return s3_uri(params.bucket_name, prefix, params.endpoint_url, params.region)


def download_s3(uri: str, dest: Path) -> list[Path]:
    """Copy the object ``uri`` names, or every object under it as a folder, into ``dest``."""
    from botocore import exceptions as bx

    bucket, key, endpoint, region = parse_s3_uri(uri)
    client = _s3_client(endpoint, region=region)
    where = f"s3://{bucket}/{key}"
    try:
        objects = []
        if key:
            try:
                head = client.head_object(Bucket=bucket, Key=key)
                objects = [(key, key.rsplit("/", 1)[-1], head["ContentLength"])]
            except bx.ClientError as exc:
                if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
                    raise
        if not objects:
            prefix = f"{key}/" if key else ""
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
                objects += [(o["Key"], o["Key"][len(prefix):], o["Size"]) for o in page.get("Contents", ())
                            if not o["Key"].endswith("/")]
        if not objects:
            raise ArtifactNotFoundError(f"nothing is stored at {where}")
        written = []
        for object_key, relative, size in objects:
            target = _inside(dest, relative)
            target.parent.mkdir(parents=True, exist_ok=True)
            client.download_file(bucket, object_key, str(target))
            if target.stat().st_size != size:
                raise PodstackError(f"{where}: {relative} arrived with {target.stat().st_size} bytes of {size}")
            written.append(target)
        return written
    except (bx.BotoCoreError, bx.ClientError) as exc:
        raise _s3_failure(exc, "downloading", where) from None


def _inside(dest: Path, relative: str) -> Path:
    """``dest/relative``, refusing a relative path that would leave ``dest``."""
    parts = [p for p in relative.replace("\\", "/").split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        raise InvalidArgumentError(f"refusing to write {relative!r}: it is not a path inside {dest}")
    return dest.joinpath(*parts)


# -- local --------------------------------------------------------------------------------------
def copy_local(source, dest: Path) -> list[Path]:
    """Copy a file, or a folder's files, into ``dest``."""
    path = Path(unquote(urlsplit(source).path) if str(source).startswith("file:") else source).expanduser()
    if not path.exists():
        raise ArtifactNotFoundError(f"{os.fspath(source)!r} does not exist")
    written = []
    for file, relative in _files_of(path):
        target = _inside(dest, relative)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(file, target)
        written.append(target)
    return written


# -- Hugging Face Hub ---------------------------------------------------------------------------
def _hub():
    try:
        import huggingface_hub
    except ImportError:
        raise ConfigurationError("Hugging Face models need huggingface_hub: pip install "
                                 "'podstack-jupyter[huggingface]'") from None
    return huggingface_hub


def hf_uri(repo: str, path: str, revision: str, endpoint: str | None = None, folder: bool = False) -> str:
    """The hub's address of a file (``.../resolve/...``) or a folder (``.../tree/...``) of a repo."""
    hub = _hub()
    base = (endpoint or hub.constants.ENDPOINT).rstrip("/")
    kind = "tree" if folder else "resolve"
    return f"{base}/{repo}/{kind}/{quote(revision, safe='')}/{quote(path.strip('/'), safe='/')}".rstrip("/")


def _parse_hf_uri(uri: str) -> tuple[str, str, str, str, bool] | None:
    """``(endpoint, repo, revision, path, is_folder)`` of a hub address, else ``None``."""
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https"):
        return None
    for kind in ("/resolve/", "/tree/"):
        head, sep, tail = parts.path.partition(kind)
        if sep and head.strip("/"):
            segments = head.strip("/").split("/")
            base_path = urlsplit(_hub().constants.ENDPOINT).path.strip("/") if parts.netloc == \
                urlsplit(_hub().constants.ENDPOINT).netloc else ""
            if base_path and segments[:len(base_path.split("/"))] == base_path.split("/"):
                segments = segments[len(base_path.split("/")):]
            else:
                base_path = ""
            revision, _, path = tail.partition("/")
            endpoint = f"{parts.scheme}://{parts.netloc}" + (f"/{base_path}" if base_path else "")
            return endpoint, "/".join(segments), unquote(revision), unquote(path), kind == "/tree/"
    return None


def hf_repo_info(repo: str, revision: str = "main", endpoint: str | None = None) -> dict:
    """What the hub says of a model repo at ``revision``: ``{"id", "sha", "author", "files",
    "last_modified", "license", "tags", "offline"}``. Offline (``HF_HUB_OFFLINE=1``) it is read
    from the local cache (``author`` is then the repo's owner, ``files`` those cached)."""
    hub = _hub()
    from huggingface_hub import errors as he

    if hub.constants.is_offline_mode():
        try:
            folder = Path(hub.snapshot_download(repo, revision=revision, local_files_only=True))
        except (he.LocalEntryNotFoundError, he.OfflineModeIsEnabled, ValueError, OSError) as exc:
            raise ModelSourceError(
                f"{repo}@{revision} is not in the local Hugging Face cache and the hub is offline "
                f"(HF_HUB_OFFLINE=1): download it once with network access, or unset HF_HUB_OFFLINE ({exc})") from None
        files = [p.relative_to(folder).as_posix() for p in sorted(folder.rglob("*")) if p.is_file()]
        return {"id": repo, "sha": folder.name, "author": repo.split("/")[0] if "/" in repo else None,
                "files": files, "last_modified": None, "license": None, "tags": [], "offline": True}
    try:
        info = hub.HfApi(endpoint=endpoint).model_info(repo, revision=revision)
    except he.RepositoryNotFoundError:
        raise ModelSourceError(f"there is no model repository {repo!r} on the hub (or it is private: set HF_TOKEN)") \
            from None
    except he.RevisionNotFoundError:
        raise ModelSourceError(f"repository {repo!r} has no revision {revision!r}") from None
    except (he.HfHubHTTPError, OSError, ValueError) as exc:
        raise ModelSourceError(
            f"cannot ask the Hugging Face hub ({endpoint or hub.constants.ENDPOINT}) about {repo!r}: "
            f"{type(exc).__name__}: {exc}. Without network access set HF_HUB_OFFLINE=1 to use the local cache.") \
            from None
    card = info.card_data.to_dict() if getattr(info, "card_data", None) is not None else {}
    return {"id": info.id, "sha": info.sha, "author": info.author,
            "files": sorted(s.rfilename for s in (info.siblings or ())),
            "last_modified": info.last_modified.isoformat() if info.last_modified else None,
            "license": card.get("license") if isinstance(card.get("license"), str) else None,
            "tags": list(info.tags or ()), "offline": False}


def hf_snapshot(repo: str, revision: str = "main", endpoint: str | None = None,
                allow_patterns: list[str] | None = None) -> Path:
    """The folder of a repo's files at ``revision`` in the local Hugging Face cache (downloaded
    first unless cached; offline, the cache alone)."""
    hub = _hub()
    from huggingface_hub import errors as he

    try:
        return Path(hub.snapshot_download(repo, revision=revision, endpoint=endpoint, allow_patterns=allow_patterns))
    except (he.HfHubHTTPError, he.LocalEntryNotFoundError, he.OfflineModeIsEnabled, OSError, ValueError) as exc:
        offline = " (the hub is offline, HF_HUB_OFFLINE=1, and it is not in the local cache)" \
            if hub.constants.is_offline_mode() else ""
        raise ModelSourceError(f"cannot get {repo}@{revision} from the Hugging Face hub{offline}: "
                               f"{type(exc).__name__}: {exc}") from None


def _download_hf(uri: str, dest: Path) -> list[Path]:
    endpoint, repo, revision, path, folder = _parse_hf_uri(uri)
    endpoint = None if endpoint.rstrip("/") == _hub().constants.ENDPOINT.rstrip("/") else endpoint
    if folder or not path:
        pattern = [f"{path}/*"] if path else None
        snapshot = hf_snapshot(repo, revision, endpoint, allow_patterns=pattern)
        return copy_local(snapshot / path if path else snapshot, dest)
    hub = _hub()
    from huggingface_hub import errors as he

    try:
        cached = hub.hf_hub_download(repo, path, revision=revision, endpoint=endpoint)
    except (he.HfHubHTTPError, he.LocalEntryNotFoundError, he.OfflineModeIsEnabled, OSError, ValueError) as exc:
        raise ModelSourceError(f"cannot download {uri}: {type(exc).__name__}: {exc}") from None
    target = _inside(dest, path.rsplit("/", 1)[-1])
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(cached, target)
    return [target]


# -- any URI ------------------------------------------------------------------------------------
def download_uri(uri: str, dest) -> list[Path]:
    """Copy the files a version's URI names into the folder ``dest``: ``s3://``, a Hugging Face
    hub address, ``file://`` or a local path."""
    dest = Path(dest)
    scheme = urlsplit(uri).scheme.lower()
    if scheme == "s3":
        return download_s3(uri, dest)
    if scheme in ("http", "https"):
        if _parse_hf_uri(uri) is not None:
            return _download_hf(uri, dest)
        raise ModelSourceError(f"cannot download {uri}: only Hugging Face hub addresses are downloaded over http(s); "
                               "fetch it with its own tool")
    if scheme == "file" or scheme == "" or (len(scheme) == 1 and os.name == "nt"):
        return copy_local(uri, dest)
    raise ModelSourceError(f"cannot download {uri}: the registry downloads s3://, file:// and Hugging Face hub "
                           "addresses (and the files of runs)")


def staging_folder(prefix: str = "podstack-model-"):
    """A temporary folder for files on their way into the artifact store."""
    return tempfile.TemporaryDirectory(prefix=prefix)
