"""Julia-compatible artifacts: ``Artifacts.toml``, ``git-tree-sha1`` and a verified cache.

An ``Artifacts.toml`` names folders of data by the git tree hash of their content and says
where to download them. A file written here is read by Julia's ``Pkg.Artifacts`` and the other
way round; the names are those of the fetch-artifacts package::

    from podstack.artifacts import artifact, create_artifact, bind_artifact

    made = create_artifact("data/", "data.tar.xz", compression="xz")      # reproducible archive
    bind_artifact("Artifacts.toml", "MyData", made["git_tree_sha1"],
                  "https://example.com/data.tar.xz", made["sha256"])
    path = artifact("MyData")      # downloaded, checked (sha256, tree hash), unpacked on first use

Installed artifacts live in ``<cache>/<git-tree-sha1>`` (``get_cache_dir()``, changed with
``set_cache_dir``), read-only, each complete or absent. ``publish_run_artifacts`` and
``publish_model_version`` turn tracked files into an entry others can install.
"""

from ._create import (add_artifact, add_download_source, bind_artifact, create_artifact, query_artifact_info,
                      unbind_artifact)
from ._install import artifact_path, get_cache_dir, set_cache_dir
from ._manager import (ArtifactManager, artifact, artifact_exists, clear_artifact_cache, ensure_artifact_installed,
                       get_artifacts_toml, load_artifacts)
from ._platform import Platform, host_platform, platforms_match, select_platform
from ._publish import ArchivePublisher, FolderPublisher, publish_model_version, publish_run_artifacts
from ._toml import ArtifactEntry, DownloadInfo, find_artifacts_toml
from ._treehash import compute_git_tree_sha1, compute_sha256

from .._julia_names import JULIA_NAMES

__all__ = list(JULIA_NAMES)
