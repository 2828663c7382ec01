"""The web UI in a real headless Chromium (Debian's `chromium`, driven by Playwright).

A user opens the asset graph, sees every dataset's group and assets, clicks "Materialize all",
follows the run to Success and reads the metadata: the verification summary, the split counts and
the split preview (class-balance histogram and thumbnail grid, rendered as images) and the
quality report's galleries (the worst images of each issue found). Screenshots of
every step are saved under test-artifacts/ui/ (git-ignored); on failure the page's text is
printed and a screenshot named failure-<step>.png is saved.
"""

from __future__ import annotations

import contextlib
import re
import time

import pytest

from tests.services import require_executable, require_module
from tests.ui.conftest import (ARTIFACTS, DATASET_ASSETS, LOCATION, SMALL_DATASETS, TRAINED_DATASET,
                              WATCHED_EPOCHS)

pytestmark = [pytest.mark.slow, pytest.mark.service]

# Flags that work in containers without a GPU, a sandbox or network access. Playwright gives
# every launch a fresh temporary --user-data-dir of its own.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]
UI_TIMEOUT_MS = 120_000          # a page or element to appear (2 busy cores)
RUN_TIMEOUT_S = 600              # the run launched from the UI to finish
TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}

DECODED = "imgs => imgs.every(img => img.complete)"      # every <img> loaded (or failed)
RUN_STATUS = "query($runId: ID!) { runOrError(runId: $runId) { ... on Run { status } } }"


@pytest.fixture(scope="session")
def browser():
    chromium = require_executable("chromium", apt_package="chromium")
    require_module("playwright", "playwright==1.65.2")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    context.set_default_timeout(UI_TIMEOUT_MS)
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


@contextlib.contextmanager
def step(page, name: str):
    """Run one step of the user's path; on failure print the page text and save a screenshot."""
    try:
        yield
    except BaseException:
        with contextlib.suppress(Exception):
            shot(page, f"failure-{name}")
        with contextlib.suppress(Exception):
            print(f"--- step {name!r} failed at {page.url}; page text:\n{page.inner_text('body')}")
        raise
    shot(page, name)


def metadata_row(page, label: str):
    """The metadata table row of `label` on an asset page."""
    row = page.locator("tr").filter(has=page.get_by_text(label, exact=True)).first
    row.wait_for()
    return row


def metadata_value(page, label: str) -> str:
    """The value shown in `label`'s metadata row (the row reads: key, timestamp, value)."""
    return metadata_row(page, label).inner_text().split()[-1]


def wait_for_run(dev, run_id: str) -> str:
    deadline = time.monotonic() + RUN_TIMEOUT_S
    status = None
    while time.monotonic() < deadline:
        status = dev.graphql(RUN_STATUS, {"runId": run_id})["runOrError"].get("status")
        if status in TERMINAL:
            return status
        time.sleep(2)
    return f"still {status} after {RUN_TIMEOUT_S} s"


def test_user_materializes_from_the_asset_graph_and_reads_metadata(browser, dagster_dev, page):
    # `browser` comes first so a missing chromium skips (or fails in CI) before dagster dev starts.
    base = dagster_dev.url

    with step(page, "01-asset-graph"):
        page.goto(f"{base}/asset-groups")
        page.get_by_role("button", name="Materialize all").wait_for()
        for name in SMALL_DATASETS:
            page.get_by_text(name, exact=True).first.wait_for()

    for name in SMALL_DATASETS:
        with step(page, f"02-group-{name}"):
            page.goto(f"{base}/locations/{LOCATION}/asset-groups/{name}")
            for asset in DATASET_ASSETS:
                page.get_by_text(asset, exact=True).first.wait_for()

    with step(page, "03-materialize-all"):
        page.goto(f"{base}/asset-groups")
        page.get_by_role("button", name="Materialize all").click()
        # The toast "Launched run <id>" links to the run.
        run_link = page.locator("a[href*='/runs/']").first
        run_link.wait_for()
        run_id = re.search(r"/runs/([0-9a-f-]{36})", run_link.get_attribute("href")).group(1)

    status = wait_for_run(dagster_dev, run_id)
    with step(page, "04-run"):
        page.goto(f"{base}/runs/{run_id}")
        page.get_by_text(run_id[:8], exact=True).first.wait_for()     # the run's header
        assert status == "SUCCESS", (
            f"{status}: {dagster_dev.run_errors(run_id)}\n{dagster_dev.log_tail()}")
        page.get_by_text("Success", exact=True).first.wait_for()
        page.get_by_text(re.compile(r"^Succeeded \([1-9]\d*\)$")).first.wait_for()   # step list

    for name, images in SMALL_DATASETS.items():
        with step(page, f"05-{name}-verification-summary"):
            page.goto(f"{base}/assets/{name}/verification_report")
            assert metadata_value(page, "total_images_checked") == str(images)
            for label in ("missing_count", "corrupt_count", "invalid_count"):
                assert metadata_value(page, label) == "0", label
            assert metadata_value(page, "passed") == "true"

        with step(page, f"06-{name}-splits-preview"):
            page.goto(f"{base}/assets/{name}/splits")
            counts = [int(metadata_value(page, f"{s}_count")) for s in ("train", "val", "test")]
            assert sum(counts) == images
            metadata_row(page, "preview").get_by_text("[Show Markdown]").click()
            dialog = page.get_by_role("dialog")
            dialog.get_by_text(f"{name} splits").wait_for()
            pictures = dialog.locator("img[src^='data:image/']")
            pictures.first.wait_for()
            page.wait_for_function(DECODED, arg=pictures.element_handles())
            sizes = pictures.evaluate_all("imgs => imgs.map(img => img.naturalWidth)")
            assert len(sizes) >= 2 and all(w > 0 for w in sizes), sizes   # histogram + grid

    with step(page, "07-animals-quality-galleries"):
        # The generated animals are flat colours: every one low_information, most dark.
        page.goto(f"{base}/assets/animals/quality_report")
        assert metadata_value(page, "images_measured") == str(SMALL_DATASETS["animals"])
        assert int(metadata_value(page, "low_information")) == SMALL_DATASETS["animals"]
        metadata_row(page, "galleries").get_by_text("[Show Markdown]").click()
        dialog = page.get_by_role("dialog")
        dialog.get_by_text("animals: quality").wait_for()
        galleries = dialog.locator("img[src^='data:image/']")
        galleries.first.wait_for()
        page.wait_for_function(DECODED, arg=galleries.element_handles())
        sizes = galleries.evaluate_all("imgs => imgs.map(img => img.naturalWidth)")
        assert len(sizes) >= 2 and all(w >= 300 for w in sizes), sizes    # a grid per issue


LIVE_TIMEOUT_S = 240             # the model's page to show a figure of the running trainer


def test_user_watches_a_model_train_live_on_its_asset_page(browser, dagster_dev, page):
    """The trainer's figures reach the model's page while its run is still going: the user sees
    the progress line (epoch k of n, images/s, ETA) of a step that is not the last."""
    from dagster_graphql import DagsterGraphQLClient

    client = DagsterGraphQLClient("127.0.0.1", port_number=dagster_dev.port)
    name = TRAINED_DATASET
    prepared = client.submit_job_execution(
        "prepare", repository_location_name=LOCATION,
        asset_selection=[[name, a] for a in (*DATASET_ASSETS, "h5_store")])
    status = wait_for_run(dagster_dev, prepared)
    assert status == "SUCCESS", f"{status}: {dagster_dev.run_errors(prepared)}"
    run_id = client.submit_job_execution(      # fresh: an earlier test may have trained it
        "train", repository_location_name=LOCATION, asset_selection=[[name, "model"]],
        run_config={"ops": {f"{name}__model": {"config": {"fresh": True}}}})
    seen, running = "", False
    with step(page, "07-model-live"):
        deadline = time.monotonic() + LIVE_TIMEOUT_S
        while time.monotonic() < deadline:
            page.goto(f"{dagster_dev.url}/assets/{name}/model?view=events")
            page.wait_for_timeout(3000)
            text = page.inner_text("body")
            match = re.search(rf"epoch \d+/{WATCHED_EPOCHS}, step \d+/\d+ \([\d.]+%\)[^\n]*", text)
            state = dagster_dev.graphql(RUN_STATUS, {"runId": run_id})["runOrError"]["status"]
            if match:
                seen, running = match.group(0), state not in TERMINAL
                break
            if state in TERMINAL:
                break
        print(f"model page showed: {seen!r} while the run was "
              f"{'running' if running else 'over'}")
        assert seen, f"no live figure on the model's page:\n{page.inner_text('body')[:3000]}"
        assert running, "the figure appeared only after the run ended"
        assert f"/{WATCHED_EPOCHS}," in seen
    status = wait_for_run(dagster_dev, run_id)
    assert status == "SUCCESS", f"{status}: {dagster_dev.run_errors(run_id)}"
