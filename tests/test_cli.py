"""The ``podstack`` console script, run as a user runs it (a subprocess of the installed entry point)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def _podstack(*args, env=None):
    exe = shutil.which("podstack", path=str(Path(sys.executable).parent))
    command = [exe] if exe else [sys.executable, "-m", "podstack_jupyter.cli"]
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=60, env=env)


def test_help_lists_commands_and_info_shows_where_things_are(podstack_home):
    import os

    env = dict(os.environ, PODSTACK_HOME=str(podstack_home))
    help_ = _podstack("--help", env=env)
    assert help_.returncode == 0 and "info" in help_.stdout
    info = _podstack("info", env=env)
    assert info.returncode == 0, info.stderr
    assert f"home:      {podstack_home}" in info.stdout
    assert "sqlite:///" in info.stdout


def test_no_command_prints_help_and_fails():
    result = _podstack()
    assert result.returncode == 2 and "usage: podstack" in result.stdout


@pytest.mark.parametrize("args", [["nope"], ["info", "--bogus"]])
def test_bad_arguments_are_usage_errors(args):
    result = _podstack(*args)
    assert result.returncode == 2 and "usage:" in result.stderr
