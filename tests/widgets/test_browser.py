"""The widgets in a real JupyterLab, in Debian's headless Chromium driven by Playwright for Python.

The example notebook ``widgets_tour.ipynb`` is opened and run from the Run menu; the test then
checks what a user sees: the live chart's lines grow while the tracked cell trains, the runs
table sorts and its selected rows are charted, the lineage graph has its nodes and shows details
on click, the artifact tree lists the files, previews the image and downloads into the notebook's
folder, the million-point chart is drawn, the ``%%gpu`` status line ends "done", and the session
panel's Stop button stops the session. A screenshot of each widget is saved under
``test-output/widgets/`` (``PODSTACK_TEST_OUTPUT`` moves it).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).parents[2]
NOTEBOOK = ROOT / "examples" / "notebooks" / "widgets_tour.ipynb"
OUTPUT = Path(os.environ.get("PODSTACK_TEST_OUTPUT", ROOT / "test-output")) / "widgets"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(),
                       reason="Debian's chromium is not installed (/usr/bin/chromium): `apt-get install chromium` "
                              "(.ci/run installs it); Playwright's own browser download is not used"),
]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    pytest.importorskip("playwright.sync_api", reason="playwright (Python) is not installed: pip install playwright")
    from _services.jupyter import jupyterlab

    root = tmp_path_factory.mktemp("lab")
    shutil.copy(NOTEBOOK, root / NOTEBOOK.name)
    token = "podstack-browser-test"
    with jupyterlab(root, token=token, log_path=tmp_path_factory.mktemp("lab-log") / "lab.log") as base:
        yield {"url": f"{base}/lab/tree/{NOTEBOOK.name}?token={token}", "root": root}


@pytest.fixture(scope="module")
def page(lab):
    from _services.jupyter import chromium_page

    with chromium_page(CHROMIUM, OUTPUT, height=1000) as page:
        yield page


def shot(locator, name: str) -> None:
    locator.scroll_into_view_if_needed()
    locator.screenshot(path=str(OUTPUT / f"{name}.png"))


def test_every_widget_renders_and_works_in_jupyterlab(lab, page):
    page.goto(lab["url"])
    page.locator(".jp-Notebook").wait_for()
    select_kernel = page.locator(".jp-Dialog").get_by_role("button", name="Select")
    try:
        select_kernel.wait_for(timeout=15_000)
        select_kernel.click()
    except Exception:  # noqa: BLE001 - the kernel started without asking
        pass
    page.wait_for_function(  # the kernel is up and idle
        "() => [...document.querySelectorAll('[data-status]')].some(e => e.getAttribute('data-status') === 'idle')",
        timeout=90_000)
    news = page.locator(".jp-toast-container").get_by_role("button", name="No")
    if news.count():
        news.first.click()  # JupyterLab's "get notified about news?" toast would cover the screenshots
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()

    # 1. the %%track cell's live chart: its lines grow while the run trains
    live_panel = page.locator(".psw-metrics").first.locator(".psw-panel[data-points]").first
    live_panel.wait_for(timeout=90_000)
    seen = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        points = int(live_panel.get_attribute("data-points") or 0)
        if not seen or points != seen[-1]:
            seen.append(points)
        if len(seen) == 8:
            shot(page.locator(".psw-metrics").first, "1-live-chart-while-training")
        if page.locator(".psw-metrics").first.locator(".psw-live").count() == 0 and len(seen) > 1:
            break
        time.sleep(0.1)
    assert len(seen) >= 4 and seen == sorted(seen), f"the live chart did not grow while the run logged: {seen}"

    # wait for the whole notebook (the last cell draws the session panel)
    sessions = page.locator(".jp-Notebook .psw-sessions")  # not the lab sidebar's panel
    sessions.locator("tr[data-session]").first.wait_for(timeout=300_000)
    errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']", has_text="Error")
    assert errors.count() == 0, errors.first.inner_text()

    live = page.locator(".psw-metrics").first
    assert live.locator("canvas").count() >= 3 and "completed" in live.inner_text()
    shot(live, "1-live-chart-final")

    # 2. three runs in one chart: a panel per metric, a line per run
    compare = page.locator(".psw-metrics").nth(1)
    panels = compare.locator(".psw-panel")
    assert panels.count() == 3
    assert all(panels.nth(i).get_attribute("data-series") == "3" for i in range(3))
    compare.locator("button[data-option='y_scale=log']").click()
    compare.locator(".psw-toggle-btn.psw-on", has_text="Log").wait_for()
    compare.locator(".psw-chip").first.click()  # legend toggle hides a run everywhere
    page.wait_for_function("el => el.dataset.series === '2'", arg=panels.first.element_handle())
    compare.locator(".psw-plot .u-over").first.hover()
    assert "step" in compare.locator(".psw-readout").first.inner_text()
    shot(compare, "2-metrics-three-runs")

    # 3. runs table: sort by a metric, select two rows -> they are charted below
    runs = page.locator(".psw-runs")
    # the table follows the experiment: the three MLPs, and the run a later cell started
    names = sorted(runs.locator(".psw-tr").nth(i).inner_text().split()[0] for i in range(runs.locator(".psw-tr").count()))
    assert names == ["long-signal", "mlp-lr0.01", "mlp-lr0.05", "mlp-lr0.2"], names
    runs.locator(".psw-th[data-column='metrics.val_accuracy']").click()
    runs.locator(".psw-th[data-column='metrics.val_accuracy'] .psw-sort").wait_for()
    runs.locator(".psw-filter").fill("hidden > 40")
    page.wait_for_function("el => el.querySelectorAll('.psw-tr').length === 2", arg=runs.element_handle())
    runs.locator(".psw-tr").nth(0).click()
    runs.locator(".psw-tr").nth(1).click(modifiers=["Shift"])
    below = page.locator(".psw-runs + * .psw-metrics, .psw-runs ~ .psw-metrics").first
    explorer_chart = runs.locator("xpath=ancestor::div[contains(@class,'widget-vbox')][1]").locator(".psw-metrics")
    chart = explorer_chart if explorer_chart.count() else below
    chart.locator(".psw-panel[data-series='2']").first.wait_for()
    shot(runs.locator("xpath=ancestor::div[contains(@class,'widget-vbox')][1]"), "3-runs-table-and-selection")

    # 4. lineage graph: 2 datasets -> 3 runs -> 3 versions; hover and click for details
    lineage = page.locator(".psw-lineage")
    assert lineage.locator("g.psw-node").count() == 8
    assert lineage.locator("g.psw-node-version").count() == 3 and "champion" in lineage.inner_text()
    lineage.locator("g.psw-node-dataset").first.hover()
    assert "digest" in lineage.locator(".psw-tooltip").inner_text()
    production = lineage.locator("g.psw-node-version", has_text="production").first
    production.click()
    lineage.locator(".psw-details table").wait_for()
    assert "production" in lineage.locator(".psw-details").inner_text()
    shot(lineage, "4-lineage-graph")

    # 5. artifact browser: the tree lists the files; preview the image; download into the folder
    artifacts = page.locator(".psw-artifacts")
    text = artifacts.inner_text()
    for name in ("confusion_matrix.png", "per_class.csv", "config.json", "model"):
        assert name in text
    assert "total" in artifacts.locator(".psw-footer").inner_text()
    artifacts.get_by_role("button", name="preview plots/confusion_matrix.png").click()
    artifacts.locator("img.psw-preview-img").wait_for()
    artifacts.get_by_role("button", name="download config.json").click()
    artifacts.locator(".psw-saved").first.wait_for()
    assert (lab["root"] / "config.json").is_file()
    shot(artifacts, "5-artifact-browser")

    # 6. a million points, drawn from each bucket's min and max
    million = page.locator(".psw-metrics").nth(3)
    assert "1,000,000 points" in million.locator(".psw-footer").inner_text()
    shot(million, "6-million-point-metric")

    # 7. %%gpu status line and the session panel's Stop button
    status = page.locator(".psw-gpu-status")
    assert "done" in status.inner_text()
    shot(status, "7-gpu-status-line")
    shot(sessions, "8-session-panel")
    sessions.get_by_role("button", name="Stop").click()
    sessions.locator(".psw-status", has_text="stopped session").wait_for()
    assert "stopped" in sessions.locator("tr[data-session]").first.inner_text()
    shot(sessions, "8-session-panel-after-stop")
