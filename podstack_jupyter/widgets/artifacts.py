"""The artifact browser: a run's artifacts as a tree, with the dashboard's columns.

Path, a type badge by extension (coloured by category), size, upload time; the total size in
the footer. The view's download button copies a file or folder into the notebook's working
folder (never over a different file already there: that one keeps its name and the download
gets a numbered one); preview shows images and the start of text files.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import shutil
import tempfile
from pathlib import Path

import traitlets

from ..errors import ArtifactNotFoundError, InvalidArgumentError
from ._base import PodstackWidget

__all__ = ["ArtifactBrowser", "artifact_category"]

_CATEGORIES = {
    "model": {"pt", "pth", "ckpt", "safetensors", "bin", "onnx", "h5", "keras", "pkl", "pickle", "joblib", "pb",
              "tflite", "gguf", "mlmodel"},
    "data": {"csv", "tsv", "parquet", "feather", "arrow", "npy", "npz", "jsonl", "avro", "orc", "xlsx", "db",
             "sqlite", "h5ad", "tfrecord"},
    "image": {"png", "jpg", "jpeg", "gif", "svg", "webp", "bmp", "tif", "tiff"},
    "config": {"json", "yaml", "yml", "toml", "ini", "cfg", "conf", "env"},
    "text": {"txt", "md", "log", "rst", "html", "out"},
    "code": {"py", "ipynb", "sh", "r", "sql", "js", "ts"},
    "archive": {"zip", "tar", "gz", "tgz", "bz2", "xz", "7z", "zst"},
}
_IMAGE_MIME = {"png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "gif": "image/gif",
               "svg": "image/svg+xml", "webp": "image/webp", "bmp": "image/bmp"}
PREVIEW_IMAGE_BYTES = 8 * 1024 * 1024
PREVIEW_TEXT_BYTES = 64 * 1024


def artifact_category(path: str) -> tuple[str, str]:
    """``(extension, category)`` of an artifact path: ``("pt", "model")``, ``("png", "image")``..."""
    name = posixpath.basename(path)
    extension = name.rsplit(".", 1)[-1].lower() if "." in name.strip(".") else ""
    for category, extensions in _CATEGORIES.items():
        if extension in extensions:
            return extension, category
    return extension, "other"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _free_name(target: Path) -> Path:
    stem, suffix = (target.stem, target.suffix) if target.suffix else (target.name, "")
    for i in range(2, 10_000):
        candidate = target.with_name(f"{stem} ({i}){suffix}")
        if not candidate.exists():
            return candidate
    raise InvalidArgumentError(f"no free name next to {target}")


class ArtifactBrowser(PodstackWidget):
    """``podstack.show_artifacts(run_id)``: the artifacts of a run.

    ``files``: ``{"path", "size", "modified", "etag", "ext", "category"}`` for each file;
    ``total_size`` in bytes; ``download_dir``: where downloads go (the working folder);
    ``downloads``: ``{artifact path: local path}`` of what was downloaded.
    """

    _kind = traitlets.Unicode("artifacts").tag(sync=True)
    run = traitlets.Dict().tag(sync=True)
    files = traitlets.List().tag(sync=True)
    total_size = traitlets.Int(0).tag(sync=True)
    download_dir = traitlets.Unicode("").tag(sync=True)
    downloads = traitlets.Dict().tag(sync=True)

    def __init__(self, run_id, *, download_dir=None):
        super().__init__()
        run_id = getattr(run_id, "id", run_id)
        if not isinstance(run_id, str) or not run_id:
            raise InvalidArgumentError(f"show_artifacts: run_id is a run id or a Run, got {run_id!r}")
        self._run_id = run_id
        self.download_dir = str(Path(download_dir if download_dir is not None else os.getcwd()).resolve())
        self.reload()

    def reload(self) -> None:
        from .. import registry

        run = registry.get_run(self._run_id)
        entries = registry.list_artifacts(self._run_id)
        files = []
        for e in sorted(entries, key=lambda e: e["path"]):
            extension, category = artifact_category(e["path"])
            files.append({"path": e["path"], "size": int(e["size"]), "modified": e["last_modified"], "etag": e["etag"],
                          "ext": extension, "category": category})
        with self.hold_sync():
            self.run = {"id": run.id, "name": run.name or run.id[:8], "status": run.status}
            self.files = files
            self.total_size = sum(f["size"] for f in files)

    def _summary(self) -> str:
        from ._text import size_text

        lines = [f"run {self.run.get('name')}: {len(self.files)} file(s), {size_text(self.total_size)}"]
        lines += [f"  {f['path']}  {size_text(f['size'])}  {f['modified']}" for f in self.files[:20]]
        return "\n".join(lines)

    def _known(self, path) -> str:
        if not isinstance(path, str) or not path:
            raise InvalidArgumentError(f"an artifact path is a non-empty string, got {path!r}")
        path = path.strip("/")
        if not any(f["path"] == path or f["path"].startswith(path + "/") for f in self.files):
            raise ArtifactNotFoundError(f"run {self.run.get('name')!r} has no artifact {path!r}")
        return path

    def download(self, path: str) -> str:
        """Copy the artifact file or folder ``path`` into ``download_dir``; returns the local path.
        A different file or folder already there is left alone: the copy gets a numbered name."""
        from .. import registry

        path = self._known(path)
        destination = Path(self.download_dir)
        destination.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".podstack-download-", dir=destination) as tmp:
            fetched = Path(registry.download_artifact(self._run_id, path, tmp))
            target = destination / fetched.name
            if target.exists():
                if fetched.is_file() and target.is_file() and _sha256(fetched) == _sha256(target):
                    local = target  # already here, same content
                else:
                    local = _free_name(target)
                    shutil.move(str(fetched), local)
            else:
                local = target
                shutil.move(str(fetched), local)
        self.downloads = {**self.downloads, path: str(local)}
        shown = os.path.relpath(local, os.getcwd()) if str(local).startswith(os.getcwd()) else str(local)
        self.status = f"downloaded {path} → {shown}"
        return str(local)

    def preview(self, path: str) -> tuple[dict, bytes]:
        """``(info, content)`` for the view: an image's bytes, or the start of a text file."""
        from .. import registry

        path = self._known(path)
        entry = next((f for f in self.files if f["path"] == path), None)
        if entry is None:
            raise InvalidArgumentError(f"{path!r} is a folder; preview shows files")
        mime = _IMAGE_MIME.get(entry["ext"])
        limit = PREVIEW_IMAGE_BYTES if mime else PREVIEW_TEXT_BYTES
        if mime and entry["size"] > limit:
            return {"path": path, "kind": "none", "reason": f"image larger than {limit >> 20} MB"}, b""
        with tempfile.TemporaryDirectory(prefix="podstack-preview-") as tmp:
            local = Path(registry.download_artifact(self._run_id, path, tmp))
            with open(local, "rb") as f:
                content = f.read(limit + 1)
        if mime:
            return {"path": path, "kind": "image", "mime": mime}, content
        truncated = len(content) > limit
        content = content[:limit]
        if b"\x00" in content[:4096]:
            return {"path": path, "kind": "none", "reason": "binary file"}, b""
        return {"path": path, "kind": "text", "truncated": truncated}, content

    def _on_view_download(self, content, _buffers) -> None:
        local = self.download(content.get("path"))
        self.send({"type": "downloaded", "path": content.get("path"), "local": local})

    def _on_view_preview(self, content, _buffers) -> None:
        info, data = self.preview(content.get("path"))
        self.send({"type": "preview", **info}, [data])

    def _on_view_refresh(self, _content, _buffers) -> None:
        self.reload()
