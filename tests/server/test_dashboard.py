"""The server's dashboard in Debian's headless Chromium (driven by Playwright for Python), against a
live ``podstack server`` on SQLite and a folder (its signed download URLs served by itself).

A project's runs are logged the way a notebook logs them (``podstack.registry`` over the REST
store); the test then does what a user does: a bad key is refused with a message, the right key
signs in and shows only its project, the experiment's runs are charted, the run page shows its
params, tags, notes, datasets and a chart holding every logged point (checked in the page, and on
the screenshot's pixels), the Artifacts tab lists the seed's columns and its download button
fetches the very bytes logged, and the models page shows versions, stages and aliases. The
screenshots are saved under the test's temporary folder (the path is printed) and copied to
``test-output/dashboard/`` (``PODSTACK_TEST_OUTPUT`` moves it)."""

from __future__ import annotations

import io
import json
import math
import os
import shutil
from pathlib import Path

import httpx
import pytest
from _services.podstack_server import point_registry_at

CHROMIUM = "/usr/bin/chromium"
STEPS = 300
OUTPUT = Path(os.environ.get("PODSTACK_TEST_OUTPUT", Path(__file__).parents[2] / "test-output")) / "dashboard"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(),
                       reason="Debian's chromium is not installed (/usr/bin/chromium): `apt-get install chromium` "
                              "(.ci/run installs it); Playwright's own browser download is not used"),
]


def loss(step: int) -> float:
    return 2.0 * math.exp(-step / 60) + 0.05 * math.sin(step / 5)


@pytest.fixture(scope="module")
def logged(local_server, tmp_path_factory):
    """A project with an experiment of three runs (one with params, metrics, tags, notes, a dataset,
    artifacts and a registered model in production with an alias), and another project's run."""
    from podstack_jupyter import registry

    folder = tmp_path_factory.mktemp("dashboard-data")
    project_id, key = local_server.new_project("vision-team")
    other_id, other_key = local_server.new_project("someone-else")
    monkeypatch = pytest.MonkeyPatch()
    try:
        point_registry_at(local_server, monkeypatch, other_id, other_key)
        registry.set_experiment("secret-experiment")
        with registry.start_run("not-yours"):
            registry.log_metrics({"loss": 1.0}, step=0)

        point_registry_at(local_server, monkeypatch, project_id, key)
        registry.set_experiment("resnet-cifar")
        for name, lr in (("warmup", 0.1), ("long", 0.03)):
            with registry.start_run(name):
                registry.log_params({"lr": lr})
                for step in range(50):
                    registry.log_metrics({"loss": loss(step) * (1 + lr)}, step=step)
        (folder / "curves.png").write_bytes(_png())
        (folder / "features.csv").write_text("feature,importance\nwidth,0.7\nheight,0.3\n")
        (folder / "model.pkl").write_bytes(b"\x80\x05weights" * 1000)
        (folder / "train.csv").write_text("x,y\n" + "".join(f"{i},{i % 2}\n" for i in range(100)))
        with registry.start_run("baseline") as run:
            registry.log_params({"lr": 0.01, "epochs": 3, "optimizer": "adam"})
            registry.set_tags({"team": "vision", "stage": "candidate"})
            for step in range(STEPS):
                registry.log_metrics({"loss": loss(step), "accuracy": 1 - loss(step) / 2.2}, step=step)
            registry.log_dataset("cifar-train", path=folder / "train.csv", context="training")
            registry.log_artifact(folder / "curves.png", "plots/curves.png")
            registry.log_artifact(folder / "features.csv", "analysis/features.csv")
            registry.log_artifact(folder / "model.pkl", "model/model.pkl")
        registry.register_model("resnet", run_id=run.id, artifact_path="model")
        registry.register_model("resnet", run_id=run.id, artifact_path="model")
        registry.set_model_stage("resnet", 2, "production")
        registry.set_model_alias("resnet", "champion", 2)
        with httpx.Client(base_url=local_server.url + "/api/v1", headers={"Authorization": f"Bearer {key}"}) as api:
            api.patch(f"/runs/{run.id}/notes", json={"notes": "Baseline for the sweep.\nlr from the paper."}
                      ).raise_for_status()
        registry._reset_store()
    finally:
        monkeypatch.undo()
    return {"key": key, "other_key": other_key, "run_id": run.id, "folder": folder, "project": "vision-team"}


def _png() -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(2, 1.5))
    figure.add_subplot().plot([3, 1, 2])
    out = io.BytesIO()
    figure.savefig(out, format="png")
    return out.getvalue()


@pytest.fixture
def page(tmp_path):
    pytest.importorskip("playwright.sync_api", reason="playwright (Python) is not installed: pip install playwright")
    from _services.jupyter import chromium_page

    with chromium_page(CHROMIUM, tmp_path, height=1100) as page:
        yield page


def sign_in(page, url: str, key: str):
    page.goto(url + "/")
    page.fill("#api-key", key)
    page.click("button[type=submit]")


def test_a_bad_key_is_refused_with_a_message_and_the_right_one_shows_its_project_only(page, local_server, logged):
    sign_in(page, local_server.url, logged["key"][:-3] + "xyz")
    error = page.locator("#signin-error")
    error.wait_for()
    assert "refused" in error.inner_text() and "podstack admin key create" in error.inner_text()
    assert page.evaluate("sessionStorage.getItem('podstack.apiKey')") is None

    sign_in(page, local_server.url, logged["key"])
    page.locator("[data-table=experiments]").wait_for()
    assert page.locator(".pd-project").inner_text() == "Project vision-team"
    body = page.locator("main").inner_text()
    assert "resnet-cifar" in body and "secret-experiment" not in body
    # the key is kept for this tab only, and never put in the address
    assert page.evaluate("sessionStorage.getItem('podstack.apiKey')") == logged["key"]
    assert logged["key"] not in page.url

    # the experiment: its runs in the widgets' table, the newest ones charted together
    page.click("text=resnet-cifar")
    page.locator(".psw-runs .psw-tr").first.wait_for()
    assert page.locator(".psw-runs .psw-tr").count() == 3
    page.locator(".psw-metrics .psw-panel").first.wait_for()
    series = {p.locator(".psw-panel-title").inner_text(): p.get_attribute("data-series")
              for p in page.locator(".psw-metrics .psw-panel").all()}
    assert series == {"accuracy": "1", "loss": "3"}  # only the baseline logged accuracy

    # a key revoked while signed in: the next page says so and asks for a key again
    local_server.accounts.revoke_key(logged["other_key"])
    page.evaluate(f"sessionStorage.setItem('podstack.apiKey', {json.dumps(logged['other_key'])})")
    page.goto(local_server.url + "/#/models")
    page.locator("#signin-error").wait_for()
    assert "revoked" in page.locator("#signin-error").inner_text()


def test_the_run_page_charts_every_logged_point_and_its_artifacts_download(page, local_server, logged, tmp_path):
    from PIL import Image

    sign_in(page, local_server.url, logged["key"])
    page.locator("[data-table=experiments]").wait_for()
    page.goto(f"{local_server.url}/#/runs/{logged['run_id']}")
    chart = page.locator(".psw-metrics")
    chart.locator(".psw-panel canvas").first.wait_for()
    page.locator("[data-table=datasets]").wait_for()

    # what the page shows: the run, its params, tags, notes and dataset
    main = page.locator("main")
    assert "baseline" in main.locator("h1").inner_text() and "completed" in main.locator("h1").inner_text()
    params = main.locator("[data-table=params]").inner_text()
    assert all(text in params for text in ("lr", "0.01", "epochs", "optimizer", "adam"))
    tags = main.locator("[data-table=tags]").inner_text()
    assert "team" in tags and "vision" in tags and "podstack.notes" not in tags
    assert main.locator(".pd-notes").inner_text() == "Baseline for the sweep.\nlr from the paper."
    assert "cifar-train" in main.locator("[data-table=datasets]").inner_text()

    # the chart: one panel per metric, each with every logged point, and ink on its canvas
    panels = {p.locator(".psw-panel-title").inner_text(): p for p in chart.locator(".psw-panel").all()}
    assert sorted(panels) == ["accuracy", "loss"]
    assert [panels[k].get_attribute("data-points") for k in sorted(panels)] == [str(STEPS), str(STEPS)]
    assert f"{STEPS * 2:,} points" in chart.locator(".psw-footer-info").inner_text()
    inked = page.evaluate("""() => Array.from(document.querySelectorAll('.psw-panel canvas')).map((c) => {
        const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0; for (let i = 3; i < data.length; i += 4) if (data[i] > 0) n++;
        return n; })""")
    assert len(inked) == 2 and all(n > 500 for n in inked), inked

    shot = tmp_path / "run-page.png"
    page.screenshot(path=str(shot), full_page=True)
    chart_shot = tmp_path / "run-chart.png"
    panels["loss"].screenshot(path=str(chart_shot))
    print(f"\nscreenshots: {shot} {chart_shot}")
    with Image.open(chart_shot) as shot_png:
        image = shot_png.convert("RGB")
    # the loss line is drawn in the run's colour (#0072B2), across most of the panel's width
    line = [(x, y) for x in range(image.width) for y in range(image.height)
            if _near(image.getpixel((x, y)), (0x00, 0x72, 0xB2))]
    assert len(line) > 200, f"the chart's line is missing from {chart_shot}"
    xs = sorted({x for x, _ in line})
    assert xs[-1] - xs[0] > image.width * 0.6, f"the line spans {xs[0]}..{xs[-1]} of {image.width} px"
    ys_left = [y for x, y in line if x < xs[0] + 20]
    ys_right = [y for x, y in line if x > xs[-1] - 20]
    assert min(ys_left) < min(ys_right), "the loss falls: its line starts high (small y) and ends low"

    # the Artifacts tab: the seed's columns, a type badge per file, the total, downloads that work
    page.click("[data-tab=artifacts]")
    rows = page.locator(".psw-artifacts .psw-tree-row")
    rows.first.wait_for()
    head = page.locator(".psw-artifacts .psw-tree-head").inner_text()
    assert all(column in head for column in ("Path", "Type", "Size", "Uploaded"))
    assert page.locator(".psw-artifacts .psw-tree-row:not(.psw-folder)").count() == 3
    badges = {b.inner_text(): b.get_attribute("title") for b in page.locator(".psw-artifacts .psw-type").all()}
    assert badges == {"PNG": "image", "CSV": "data", "PKL": "model"}
    sizes = sum((logged["folder"] / n).stat().st_size for n in ("curves.png", "features.csv", "model.pkl"))
    footer = page.locator(".psw-artifacts .psw-footer-info").inner_text()
    assert footer.startswith("3 files · total ") and f"{sizes / 1024:.1f} KB" in footer
    page.click(".psw-tree-row[data-path='plots/curves.png'] [aria-label='preview plots/curves.png']")
    preview = page.locator(".psw-artifacts .psw-preview-img")
    preview.wait_for()
    page.wait_for_function("() => document.querySelector('.psw-preview-img').naturalWidth > 0")
    with Image.open(logged["folder"] / "curves.png") as logged_png:
        assert preview.evaluate("img => img.naturalWidth") == logged_png.width
    page.screenshot(path=str(tmp_path / "artifacts-tab.png"), full_page=True)
    OUTPUT.mkdir(parents=True, exist_ok=True)
    for name in ("run-page.png", "run-chart.png", "artifacts-tab.png"):
        shutil.copy(tmp_path / name, OUTPUT / name)
    with page.expect_download() as download:
        page.click(".psw-tree-row[data-path='model/model.pkl'] .psw-download")
    saved = tmp_path / "downloaded.pkl"
    download.value.save_as(saved)
    assert saved.read_bytes() == (logged["folder"] / "model.pkl").read_bytes()
    assert download.value.suggested_filename == "model.pkl"
    assert "/files/" in download.value.url and "signature=" in download.value.url
    assert logged["key"] not in download.value.url

    # the models page: versions, their stages and the alias
    page.click("text=Models")
    model = page.locator("[data-model=resnet]")
    model.wait_for()
    versions = model.locator("tbody tr").all_inner_texts()
    assert versions[0].startswith("v2\tproduction\t@champion") and versions[1].startswith("v1\tdevelopment")
    assert model.locator("[data-alias=champion]").inner_text() == "@champion → v2"


def _near(pixel, color, tolerance=40) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, color))


def test_the_page_is_served_without_a_key_but_no_data_is(local_server):
    page = httpx.get(local_server.url + "/")
    assert page.status_code == 200 and "dashboard.js" in page.text
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert httpx.get(local_server.url + "/dashboard/static/dashboard.js").status_code == 200
    assert httpx.get(local_server.url + "/dashboard/static/..%2Fmain.ts").status_code == 404
    assert httpx.get(local_server.url + "/api/v1/project").status_code == 401
