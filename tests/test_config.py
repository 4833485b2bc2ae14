import os
import subprocess
import sys

import pytest

import podstack
from podstack_jupyter import config
from podstack_jupyter.errors import ConfigurationError


def test_precedence_init_over_environment_over_file_over_defaults(podstack_home, monkeypatch):
    podstack_home.mkdir(parents=True)
    (podstack_home / "config.toml").write_text('local_gpus = "T4"\nbackend = "local"\nidle_timeout = 60\n'
                                               'project_id = "from-file"\n')
    config.reset()
    assert config.settings().local_gpus == "T4" and config.settings().idle_timeout == 60.0
    assert config.settings().project_id == "from-file"  # read, though nothing uses it without a registry URL
    monkeypatch.setenv("PODSTACK_LOCAL_GPUS", "L40S:2")
    config.reset()
    assert config.settings().local_gpus == "L40S:2" and config.settings().idle_timeout == 60.0
    podstack.init(local_gpus="H100", idle_timeout=5)
    resolved = config.settings()
    assert resolved.local_gpus == "H100" and resolved.idle_timeout == 5.0
    assert resolved.tracking_url == f"sqlite:///{podstack_home / 'podstack.db'}" == resolved.database_url
    assert resolved.artifact_dir == podstack_home / "artifacts"


def test_registry_init_is_the_same_configuration(tmp_path):
    from podstack import registry

    registry.init(tracking_uri=f"sqlite:///{tmp_path / 'x.db'}", artifact_root=str(tmp_path / "files"))
    assert config.settings().tracking_url == f"sqlite:///{tmp_path / 'x.db'}"
    assert config.settings().artifact_dir == tmp_path / "files"


@pytest.mark.parametrize("given, named", [
    ({"registry_url": "https://registry.podstack.ai"}, "registry_url https://registry.podstack.ai cannot be used"),
    ({"registry_url": "http://localhost:8080", "api_key": "k", "project_id": "p"}, "no tracking store serves http://"),
    ({"api_key": "secret-key"}, "api_key= would be ignored"),
    ({"project_id": "p1"}, "project_id= would be ignored"),
    ({"api_key": "k", "project_id": "p1"}, "api_key= and project_id= would be ignored"),
    ({"tracking_uri": "mysql://u@h/db"}, "no tracking store serves mysql://"),
    ({"tracking_uri": "/just/a/path.db"}, "is not a URL; write sqlite:////"),
])
def test_settings_nothing_would_use_are_refused_and_change_nothing(given, named, podstack_home):
    before = config.settings()
    with pytest.raises(ConfigurationError, match=named.replace("(", r"\(").replace("?", r"\?")):
        podstack.init(**given)
    assert config.settings() == before
    assert "store:     sqlite:///" in config.describe()
    from podstack import registry

    with pytest.raises(ConfigurationError):
        registry.init(**given)
    assert config.settings() == before


def test_a_registry_url_from_the_environment_is_reported_as_unusable_never_as_the_store(monkeypatch):
    monkeypatch.setenv("PODSTACK_REGISTRY_URL", "https://registry.example/api")
    config.reset()
    shown = config.describe()
    store_line = next(line for line in shown.splitlines() if line.startswith("store:"))
    assert store_line.startswith("store:     none usable (registry_url https://registry.example/api cannot be used")
    from podstack_jupyter.tracking.store import current_store

    with pytest.raises(ConfigurationError, match="registry_url https://registry.example/api cannot be used"):
        current_store()  # never a silent fall-back to the local file
    monkeypatch.setenv("PODSTACK_API_KEY", "k")  # for another tool: read, unused, harmless
    monkeypatch.delenv("PODSTACK_REGISTRY_URL")
    config.reset()
    assert "store:     sqlite:///" in config.describe()


def test_a_store_registered_for_a_scheme_makes_the_server_settings_work(tmp_path, monkeypatch):
    """What the podstack server's REST store will do: one module, one registry entry."""
    from podstack_jupyter.tracking import registry, store as stores
    from podstack_jupyter.tracking.store.sql import SQLStore

    opened = []

    class ServerStore(SQLStore):  # a real store standing in for the REST one: it records how it was opened
        def __init__(self, url, api_key=None, project_id=None):
            opened.append((url, api_key, project_id))
            super().__init__(f"sqlite:///{tmp_path / 'server.db'}")

    monkeypatch.setitem(stores._STORES, "http", (ServerStore, ("api_key", "project_id")))
    try:
        podstack.init(registry_url="http://team.example:8080", api_key="k-123", project_id="p-1")
        assert "store:     http://team.example:8080" in config.describe()
        with registry.start_run("on-the-server") as run:
            registry.log_metric("loss", 0.5)
        assert opened == [("http://team.example:8080", "k-123", "p-1")]
        assert ServerStore(tmp_path).get_run(run.id)["metrics"] == {"loss": 0.5}
    finally:
        config.reset()
        registry._reset_store()


def test_bad_settings_name_what_to_fix(podstack_home, monkeypatch):
    podstack_home.mkdir(parents=True)
    (podstack_home / "config.toml").write_text('projekt = "typo"\n')
    config.reset()
    with pytest.raises(ConfigurationError, match="unknown setting.*projekt.*valid keys"):
        config.settings()
    (podstack_home / "config.toml").unlink()
    monkeypatch.setenv("PODSTACK_IDLE_TIMEOUT", "soon")
    config.reset()
    with pytest.raises(ConfigurationError, match="PODSTACK_IDLE_TIMEOUT must be a number"):
        config.settings()
    with pytest.raises(ConfigurationError, match="unknown setting"):
        podstack.init(colour="blue")


def test_auto_init_reads_the_environment_at_import(podstack_home):
    env = dict(os.environ, PODSTACK_AUTO_INIT="1", PODSTACK_API_KEY="env-key")
    out = subprocess.run([sys.executable, "-c", "import podstack, podstack_jupyter.config as c; "
                          "print(c._current is not None, c.settings().api_key)"],
                         env=env, capture_output=True, text=True, check=True).stdout.split()
    assert out == ["True", "env-key"]


def test_import_is_lazy():
    code = "import sys, podstack; print(sorted(m for m in ('sqlalchemy', 'jupyter_client', 'cloudpickle') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_an_artifact_root_no_repository_serves_is_refused_and_never_shown_as_in_use(monkeypatch, tmp_path):
    before = config.settings()
    with pytest.raises(ConfigurationError, match="artifact_root gs://bucket/prefix cannot be used"):
        podstack.init(artifact_root="gs://bucket/prefix")
    assert config.settings() == before
    podstack.init(artifact_root=f"file://{tmp_path / 'files'}")
    assert config.settings().artifact_dir == tmp_path / "files"
    config.reset()
    monkeypatch.setenv("PODSTACK_ARTIFACT_ROOT", "gs://elsewhere")
    config.reset()
    lines = dict(line.split(":", 1) for line in config.describe().splitlines()[1:])
    assert lines["artifacts"].strip().startswith("none usable (artifact_root gs://elsewhere cannot be used")
    assert lines["store"].strip().startswith("sqlite:///")


# -- secrets stay secret --------------------------------------------------------------------------
SECRET = "sk-live-0123456789abcdef"
DB_PASSWORD = "hunter2-db-password"


@pytest.fixture
def server_store(tmp_path, monkeypatch):
    """A store that takes an API key (what the podstack server's will be), so init(api_key=...) is used."""
    from podstack_jupyter.tracking import registry, store as stores
    from podstack_jupyter.tracking.store.sql import SQLStore

    class ServerStore(SQLStore):
        def __init__(self, url, api_key=None, project_id=None):
            super().__init__(f"sqlite:///{tmp_path / 'server.db'}")

    monkeypatch.setitem(stores._STORES, "http", (ServerStore, ("api_key", "project_id")))
    yield
    config.reset()
    registry._reset_store()


def test_init_as_a_cells_last_line_shows_no_key_and_saves_none_in_the_notebook(ip, server_store):
    result = ip.run_cell(f"import podstack\npodstack.init(registry_url='http://team.example:8080', "
                         f"api_key='{SECRET}', project_id='p1')")
    assert result.error_in_exec is None
    shown, _ = ip.display_formatter.format(result.result)  # what the notebook shows and the .ipynb keeps
    assert shown and all(SECRET not in str(value) for value in shown.values())
    assert "api_key='***'" in shown["text/plain"] and "project_id='p1'" in shown["text/plain"]
    assert config.settings().api_key == SECRET  # masked when shown, intact when used
    assert SECRET not in repr(config.settings()) and SECRET not in str(config.settings())


def test_info_and_percent_podstack_never_show_a_database_password(ip, monkeypatch, capsys):
    from podstack_jupyter import cli

    url = f"postgresql://podstack:{DB_PASSWORD}@db.example:5432/tracking?sslpassword=also-secret"
    monkeypatch.setenv("PODSTACK_TRACKING_URI", url)
    config.reset()
    ip.run_line_magic("podstack", "")
    cli.main(["info"])
    printed = capsys.readouterr().out
    assert "store:     postgresql://podstack:***@db.example:5432/tracking?sslpassword=***" in printed
    assert DB_PASSWORD not in printed and "also-secret" not in printed
    assert DB_PASSWORD not in repr(config.settings())


@pytest.mark.parametrize("text, shown", [
    ("https://user:tok3n@pypi.example/simple/pkg.whl", "https://user:***@pypi.example/simple/pkg.whl"),
    ("git+https://ghp_tok3n@github.com/org/repo.git", "git+https://***@github.com/org/repo.git"),
    ("pkg @ https://files.example/pkg.whl?token=tok3n&v=2", "pkg @ https://files.example/pkg.whl?token=***&v=2"),
    ("https://h/x?X-Amz-Signature=tok3n&X-Amz-Credential=tok3n", "https://h/x?X-Amz-Signature=***&X-Amz-Credential=***"),
    ("postgresql://podstack@127.0.0.1/db", "postgresql://podstack@127.0.0.1/db"),
    ("torch==2.13.0", "torch==2.13.0"),
])
def test_redact(text, shown):
    assert config.redact(text) == shown


def test_pip_tokens_are_redacted_in_the_gpu_tag_the_spec_and_build_messages(ip, tmp_path, podstack_home):
    from podstack import registry
    from podstack_jupyter.compute import GPUSpec
    from podstack_jupyter.compute.backends import _venvs
    from podstack_jupyter.errors import EnvironmentBuildError

    url = "https://user:tok3n@pypi.example/pkg.whl?token=tok3n"
    try:
        result = ip.run_cell(f"%%track --name private-index\n%%gpu --local --pip {url}\nx = 1")
        assert result.error_in_exec is None
        (run,) = registry.search_runs(filter="name = 'private-index'")
        assert run.tags["podstack.gpu"] == "any pip=https://user:***@pypi.example/pkg.whl?token=***"
    finally:
        registry._reset_store()
    spec = GPUSpec(pip=(url,))
    assert "tok3n" not in repr(spec) and "tok3n" not in spec.describe()
    messages = []
    with pytest.raises(EnvironmentBuildError) as failed:
        _venvs._run([sys.executable, "-c", f"print('Collecting {url}'); raise SystemExit(1)"], messages.append)
    assert messages and not any("tok3n" in m for m in messages) and "tok3n" not in str(failed.value)


def test_errors_never_carry_a_urls_secret():
    from podstack_jupyter.errors import ConfigurationError, StoreError

    error = StoreError(f"cannot reach postgresql://u:{DB_PASSWORD}@db/x?token={SECRET}")
    assert DB_PASSWORD not in str(error) and SECRET not in error.message and "postgresql://u:***@db" in str(error)
    with pytest.raises(ConfigurationError) as refused:
        podstack.init(registry_url=f"https://user:{SECRET}@registry.example/api")
    assert SECRET not in str(refused.value) and "https://user:***@registry.example/api" in str(refused.value)
