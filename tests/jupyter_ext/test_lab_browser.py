"""The lab extension in a real JupyterLab, in Debian's headless Chromium driven by Playwright.

One JupyterLab, one notebook written here: ``%load_ext podstack``, a ``%%track`` cell that logs
metrics and registers a model, then a tracked ``%%gpu`` cell that runs a few seconds. What a user sees is
checked: the status bar goes from "no session" to running (with the elapsed time and the run) to
idle; clicking it opens the sidebar, which follows the running cell by itself and lists the
session, the runs with their latest metric and the model; clicking the run opens
its metrics chart; the sidebar's Stop button stops the session and the status bar says so.
Screenshots go to ``test-output/labextension/`` (``PODSTACK_TEST_OUTPUT`` moves it).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import nbformat
import pytest

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).parents[2]
OUTPUT = Path(os.environ.get("PODSTACK_TEST_OUTPUT", ROOT / "test-output")) / "labextension"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(),
                       reason="Debian's chromium is not installed (/usr/bin/chromium): `apt-get install chromium` "
                              "(.ci/run installs it); Playwright's own browser download is not used"),
]

CELLS = [
    "%load_ext podstack",
    "%%track --name sidebar-run --experiment lab-sidebar\n"
    "from podstack import registry\n"
    "for step in range(5):\n"
    "    registry.log_metrics({'loss': 1.0 / (step + 1)}, step=step)\n"
    "registry.register_model('lab-model', run_id=registry.active_run().id)",
    "%%track --name gpu-run --experiment lab-sidebar\n%%gpu\nimport time\ntime.sleep(8)\nanswer = 42",
    "print('answer', answer)",
]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    pytest.importorskip("playwright.sync_api", reason="playwright (Python) is not installed: pip install playwright")
    root = tmp_path_factory.mktemp("lab")
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, root / "sidebar.ipynb")
    from _services.jupyter import jupyterlab

    token = "podstack-lab-test"
    log = tmp_path_factory.mktemp("lab-log") / "lab.log"
    with jupyterlab(root, token=token, log_path=log) as base:
        yield {"url": f"{base}/lab/tree/sidebar.ipynb?token={token}", "root": root, "log": log}


@pytest.fixture(scope="module")
def page(lab):
    from _services.jupyter import chromium_page

    with chromium_page(CHROMIUM, OUTPUT, height=900) as page:
        yield page


def _status_texts_until(page, predicate, timeout: float) -> list[str]:
    """The status bar item's texts, sampled until ``predicate(text)`` holds (or the deadline)."""
    seen: list[str] = []
    item = page.locator(".podstack-status")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = item.inner_text()
        if not seen or text != seen[-1]:
            seen.append(text)
        if predicate(text):
            return seen
        time.sleep(0.1)
    raise AssertionError(f"the status bar never showed what was expected; it showed {seen}")


def test_sidebar_and_status_bar_follow_the_notebook(lab, page):
    page.goto(lab["url"])
    page.locator(".jp-Notebook").wait_for()
    select_kernel = page.locator(".jp-Dialog").get_by_role("button", name="Select")
    try:
        select_kernel.wait_for(timeout=10_000)
        select_kernel.click()
    except Exception:  # noqa: BLE001 - the kernel started without asking
        pass
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-status]')].some(e => e.getAttribute('data-status') === 'idle')",
        timeout=90_000)
    news = page.locator(".jp-toast-container").get_by_role("button", name="No")
    if news.count():
        news.first.click()
    status = page.locator(".podstack-status")
    assert "no session" in status.inner_text()
    # clicking the status bar item opens the sidebar
    status.click()
    sidebar = page.locator("#podstack-sidebar")
    sidebar.wait_for(state="visible")
    assert "No GPU sessions" in sidebar.inner_text()

    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()

    # the %%gpu cell: the status bar shows the session running with its elapsed time, then idle
    seen = _status_texts_until(page, lambda t: ": running" in t and "s" in t.split("running")[-1], 120)
    running = status.inner_text()
    status.screenshot(path=str(OUTPUT / "1-status-running.png"))
    # meanwhile the sidebar follows without a click: the busy session, the run still running
    sidebar.locator("tr[data-session]", has_text="busy").wait_for(timeout=10_000)
    sidebar.locator(".podstack-run[data-status='running']", has_text="gpu-run").wait_for(timeout=10_000)
    sidebar.screenshot(path=str(OUTPUT / "2-sidebar-while-running.png"))
    seen += _status_texts_until(page, lambda t: ": idle" in t, 60)
    assert "no session" in seen[0], seen
    assert any(": running" in t for t in seen), seen
    assert running.startswith("GPU ") and "running" in running and "run gpu-run" in running, running
    page.locator(".jp-OutputArea-output", has_text="answer 42").wait_for()
    status.screenshot(path=str(OUTPUT / "2-status-idle.png"))

    # the sidebar: the session, the runs and the model
    session_row = sidebar.locator("tr[data-session]").first
    session_row.wait_for()
    assert "idle" in session_row.inner_text()
    run = sidebar.locator(".podstack-run", has_text="sidebar-run")
    run.wait_for()
    assert "completed" in run.inner_text() and "loss 0.2" in run.inner_text(), run.inner_text()
    assert "lab-sidebar" in sidebar.locator(".podstack-section").first.inner_text()
    model = sidebar.locator(".podstack-model", has_text="lab-model")
    model.wait_for()
    assert "v1" in model.inner_text() and "development" in model.inner_text()
    assert "⚠" not in sidebar.locator(".podstack-store").inner_text()  # the server reads the notebook's store
    sidebar.screenshot(path=str(OUTPUT / "3-sidebar.png"))

    # a click on the run opens its metrics chart: one panel, five points
    run.click()
    chart = page.locator(".podstack-chart .psw-metrics")
    chart.locator(".psw-panel[data-points='5']").first.wait_for()
    chart.screenshot(path=str(OUTPUT / "4-run-chart.png"))

    # Stop from the sidebar: the session stops, the status bar goes back to "no session"
    session_row.get_by_role("button", name="Stop").click()
    sidebar.locator(".psw-status", has_text="stopped session").wait_for()
    _status_texts_until(page, lambda t: "no session" in t, 30)
    assert "stopped" in sidebar.locator("tr[data-session]").first.inner_text()
    sidebar.screenshot(path=str(OUTPUT / "5-sidebar-after-stop.png"))
