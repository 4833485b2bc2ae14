"""The public names of ``podstack`` and ``podstack.registry`` (seed 000's API), pinned."""

import podstack
from podstack import registry


def test_podstack_public_names():
    assert sorted(podstack.__all__) == sorted([
        "init", "load_ipython_extension", "unload_ipython_extension", "__version__",
        "gpu", "run_on_gpu", "GPURunResult", "sessions", "Client", "registry", "experiment", "run", "model",
        "ModelRegistry", "ModelManager",
        "artifacts", "config", "events", "errors",
        "PodstackError", "ConfigurationError", "AuthenticationError", "RateLimitError", "GPUNotAvailableError",
        "EnvironmentBuildError", "SerializationError", "ExecutionTimeoutError", "RemoteExecutionError",
        "SessionDiedError", "CellSyntaxError", "StoreError", "PermissionDeniedError", "InvalidArgumentError",
        "DuplicateError", "NotFoundError",
        "ExperimentNotFoundError", "RunNotFoundError", "ModelNotFoundError", "ArtifactNotFoundError",
        "ArtifactIntegrityError", "TreeHashMismatchError", "UnsafeArchiveError", "ArtifactInstallError",
        "ModelSourceError", "ArtifactsUploadError", "ArtifactsDownloadError",
        "show_metrics", "show_runs", "show_lineage", "show_artifacts", "show_sessions"])
    for name in podstack.__all__:
        assert getattr(podstack, name) is not None


def test_registry_public_names_are_seed_000s_plus_the_clients():
    assert sorted(registry.__all__) == sorted([
        "init", "flush", "client", "model_client",
        "set_experiment", "get_experiment", "get_experiment_by_name", "list_experiments",
        "start_run", "end_run", "active_run", "get_run",
        "log_param", "log_params", "log_metric", "log_metrics", "set_tag", "set_tags", "delete_tag",
        "get_metric_history", "compare_runs", "search_runs",
        "log_dataset", "get_run_datasets", "get_model_lineage",
        "log_artifact", "list_artifacts", "download_artifact", "log_model", "load_model",
        "register_model", "set_model_stage", "set_model_alias", "delete_model_alias", "get_model",
        "get_model_version", "list_models", "set_latest_version", "delete_model",
        "Run", "Experiment", "Dataset", "MetricPoint", "MetricHistory", "RegisteredModel", "ModelVersion",
        "RUN_STATUSES", "MODEL_STAGES"])
    for name in registry.__all__:
        assert callable(getattr(registry, name)) or name.isupper()
    assert podstack.registry is registry
