import os
import subprocess
import sys

import pytest

import podstack
from podstack_jupyter import config
from podstack_jupyter.errors import ConfigurationError


def test_precedence_init_over_environment_over_file_over_defaults(podstack_home, monkeypatch):
    podstack_home.mkdir(parents=True)
    (podstack_home / "config.toml").write_text('project_id = "from-file"\napi_url = "https://file.example/v1"\n'
                                               'idle_timeout = 60\n')
    config.reset()
    assert config.settings().project_id == "from-file" and config.settings().idle_timeout == 60.0
    monkeypatch.setenv("PODSTACK_PROJECT_ID", "from-env")
    config.reset()
    assert config.settings().project_id == "from-env" and config.settings().api_url == "https://file.example/v1"
    podstack.init(api_key="k", project_id="from-init")
    resolved = config.settings()
    assert resolved.project_id == "from-init" and resolved.api_key == "k"
    assert resolved.database_url == f"sqlite:///{podstack_home / 'podstack.db'}"
    assert resolved.artifact_dir == podstack_home / "artifacts"


def test_registry_init_is_the_same_configuration():
    from podstack import registry

    registry.init(api_key="abc", project_id="p1", registry_url=None)
    assert config.settings().api_key == "abc" and config.settings().project_id == "p1"


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


def test_compute_backend_settings_from_environment_and_init(monkeypatch):
    monkeypatch.setenv("PODSTACK_BACKEND", "ray")
    monkeypatch.setenv("PODSTACK_RAY_ADDRESS", "head:6379")
    monkeypatch.setenv("PODSTACK_RAY_PLACEMENT_TIMEOUT", "5")
    config.reset()
    s = config.settings()
    assert (s.backend, s.ray_address, s.ray_placement_timeout, s.ray_connect) == ("ray", "head:6379", 5.0, "auto")
    s = podstack.init(backend="jupyter", jupyter_url="http://gpu-box:8888", jupyter_token="t", jupyter_gpus="T4:2")
    assert (s.backend, s.jupyter_url, s.jupyter_token, s.jupyter_gpus) == ("jupyter", "http://gpu-box:8888", "t", "T4:2")


def test_bad_compute_backend_settings_say_what_is_valid(monkeypatch):
    monkeypatch.setenv("PODSTACK_RAY_CONNECT", "smoke-signals")
    config.reset()
    with pytest.raises(ConfigurationError, match="PODSTACK_RAY_CONNECT must be one of auto, direct, tunnel"):
        config.settings()
    monkeypatch.delenv("PODSTACK_RAY_CONNECT")
    monkeypatch.setenv("PODSTACK_RAY_PLACEMENT_TIMEOUT", "0")
    config.reset()
    with pytest.raises(ConfigurationError, match="PLACEMENT_TIMEOUT must be above 0"):
        config.settings()
