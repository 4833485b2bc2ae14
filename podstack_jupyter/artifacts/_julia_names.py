"""The public names of ``artifacts.julia``, listed apart so ``artifacts`` can offer them without importing it."""

JULIA_NAMES = (
    # using artifacts
    "artifact", "artifact_exists", "load_artifacts", "ArtifactManager", "ArtifactEntry", "DownloadInfo",
    "get_artifacts_toml", "find_artifacts_toml", "ensure_artifact_installed", "artifact_path",
    # the cache
    "set_cache_dir", "get_cache_dir", "clear_artifact_cache",
    # making and binding artifacts
    "create_artifact", "bind_artifact", "unbind_artifact", "add_artifact", "add_download_source",
    "query_artifact_info", "compute_git_tree_sha1", "compute_sha256",
    # platforms
    "Platform", "host_platform", "platforms_match", "select_platform",
    # publishing tracked files
    "publish_run_artifacts", "publish_model_version", "ArchivePublisher", "FolderPublisher",
)
