"""The web pages in a real headless Chromium, against a real `farm api` (embedded mode).

Sign in with a key, submit a grid with the form, watch the job page reach 100 %,
see its contact sheet load, click an image and read its parameters, then open
the static gallery and switch its axes.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.services import ROOT, FarmProcess, free_port, wait_http_ok

SCREENSHOTS = os.environ.get("FARM_TEST_SCREENSHOTS")  # a folder: save what the test saw


def _farm(env: dict[str, str], *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "farm", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


@pytest.fixture(scope="module")
def web(
    model_cache: Path, tiny_scorer: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    """(base URL, API key) of a `farm api` rendering in-process with tiny-sdxl, scoring
    every image with the tiny brightness scorer (tests/tiny_scorer.py)."""
    data = tmp_path_factory.mktemp("web")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FARM_")}
    env.update(
        {
            "FARM_DATA_DIR": str(data),
            "FARM_MODEL": "tiny-sdxl",
            "FARM_MODELS": json.dumps({"tiny-sdxl": "tiny-sdxl"}),
            "FARM_MODEL_CACHE_DIR": str(model_cache),
            "FARM_PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
            "FARM_SHEET_INTERVAL_S": "0.5",
            "FARM_SCORER": str(tiny_scorer),
        }
    )
    _farm(env, "migrate")
    key = _farm(env, "keys", "create", "--tenant", "browser").strip().splitlines()[-1]
    api = FarmProcess(["api", "--port", str(port)], env).start()
    try:
        wait_http_ok(f"http://127.0.0.1:{port}/healthz", timeout_s=120)
        yield f"http://127.0.0.1:{port}", key
    finally:
        api.stop()


def _shot(page: Page, name: str) -> None:
    if SCREENSHOTS:
        page.screenshot(path=str(Path(SCREENSHOTS) / name), full_page=True)


def _natural_width(page: Page, selector: str) -> int:
    width: int = page.eval_on_selector(selector, "img => img.complete ? img.naturalWidth : 0")
    return width


def test_sign_in_submit_watch_and_inspect_a_grid(web: tuple[str, str], browser: Browser) -> None:
    base, key = web
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(30_000)

    # Signed out, a page sends you to the login form; a wrong key is refused there.
    page.goto(f"{base}/web/jobs")
    expect(page).to_have_url(re.compile(r"/login\?next="))
    page.fill("input[name=api_key]", "farm_not-a-key")
    page.click("button[type=submit]")
    expect(page.get_by_role("alert")).to_contain_text("not valid")
    page.fill("input[name=api_key]", key)
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{base}/web/jobs")
    cookie = next(c for c in page.context.cookies() if c["name"] == "farm_key")
    assert cookie["httpOnly"] and cookie["value"] == key

    # Submit a 1 prompt × 2 buckets × 2 seeds grid through the form.
    page.click("text=New grid")
    page.fill("input[name=name]", "browser grid")
    page.fill("textarea[name=prompts]", "1girl, hatsune miku, vocaloid, twintails, smile")
    page.check("input[name=buckets][value='832x1216']")
    page.fill("input[name=seeds]", "3, 4")
    page.fill("input[name=steps]", "2")
    page.click("button:has-text('Render')")
    expect(page).to_have_url(re.compile(r"/web/jobs/[0-9a-f-]{36}$"))
    job_id = page.url.rsplit("/", 1)[-1]

    # Progress reaches 100 % on the page by itself (polling), with no reload.
    expect(page.locator("#percent")).to_have_text("100%", timeout=240_000)
    expect(page.locator("#status")).to_have_text("succeeded")
    expect(page.locator("#counts")).to_contain_text("4/4 images")

    # The contact sheet loads (the final one, once the gallery is written too).
    expect(page.locator("#gallery-link")).to_be_visible(timeout=60_000)
    page.wait_for_function(
        "() => { const i = document.querySelector('#sheets img');"
        " return i && i.complete && i.naturalWidth > 0 && i.src.includes('final'); }"
    )
    assert _natural_width(page, "#sheets img") > 256 + 175  # both buckets side by side
    _shot(page, "job-page.png")

    # Each thumbnail shows its score and label (api/static/scores.js).
    thumbs = page.locator("#images img")
    expect(thumbs).to_have_count(4)
    page.wait_for_function(  # each thumbnail shows (or, not written yet, its full image)
        "() => [...document.querySelectorAll('#images img')].every(i => i.naturalWidth > 0)"
    )
    expect(page.locator("#images .score-badge")).to_have_count(4)
    expect(page.locator("#images .score-badge").first).to_have_text(re.compile(r"^0\.\d{3} · "))
    expect(page.locator("#best-sheets a")).to_have_count(1)

    # A click on an image shows it full size with its parameters.
    thumbs.nth(1).click()  # cell 1: 1024x1024, seed 4
    viewer = page.locator("#viewer")
    expect(viewer).to_be_visible()
    params = page.locator("#params")
    expect(params.locator("tr", has_text="seed")).to_contain_text("4")
    expect(params.locator("tr", has=page.locator("th", has_text="size"))).to_contain_text(
        "1024x1024"
    )
    expect(params).to_contain_text("hatsune miku")
    expect(params.locator("tr.score")).to_contain_text(re.compile(r"0\.\d{3}"))
    page.wait_for_function("() => document.querySelector('#full').naturalWidth === 1024")
    _shot(page, "job-image.png")
    page.click("#close")
    expect(viewer).to_be_hidden()

    # The job list shows it finished.
    page.goto(f"{base}/web/jobs")
    row = page.locator(f"tr[data-id='{job_id}'], tr:has(a[href='/web/jobs/{job_id}'])").first
    expect(row).to_contain_text("succeeded")
    expect(row).to_contain_text("4/4")

    # The static gallery: grid of thumbnails, axes that can be swapped, a full-size viewer.
    page.goto(f"{base}/web/jobs/{job_id}/files/index.html")
    grid = page.locator("table.grid")
    expect(grid).to_have_count(1)  # sections: one prompt
    expect(grid.locator("tr")).to_have_count(3)  # header + 2 seeds (rows)
    page.wait_for_function(
        "() => [...document.querySelectorAll('.cell img')].every(i => i.naturalWidth > 0)"
    )
    page.select_option("#rows", "bucket")
    expect(page.locator("#cols")).to_have_value("seed")  # swapped, never the same axis twice
    expect(grid.locator("th.row").first).to_have_text("1024x1024")
    page.locator(".cell img").first.click()
    expect(page.locator("#params")).to_contain_text("hatsune miku")
    page.close()


def test_tick_two_cells_and_refine_them_from_the_job_page(
    web: tuple[str, str], browser: Browser
) -> None:
    base, key = web
    grid = {"name": "to refine", "prompts": ["1girl, solo"], "seeds": [5, 6, 7], "steps": 2}
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}) as http:
        parent = http.post("/v1/jobs", json=grid).json()["id"]
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(30_000)
    page.goto(f"{base}/login?next=/web/jobs/{parent}")
    page.fill("input[name=api_key]", key)
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{base}/web/jobs/{parent}")

    # Tick cells 0 and 2 (rendered or not: an override re-renders them) and submit.
    picks = page.locator("#images input.pick")
    expect(picks).to_have_count(3)
    picks.nth(0).check()
    picks.nth(2).check()
    expect(page.locator("#picked")).to_have_text("2 cells ticked")
    page.fill("#refine-form input[name=steps]", "3")
    page.click("#refine-submit")
    expect(page).to_have_url(re.compile(r"/web/jobs/[0-9a-f-]{36}$"))
    child = page.url.rsplit("/", 1)[-1]
    assert child != parent
    expect(page.locator("#parent-link")).to_have_attribute("href", f"/web/jobs/{parent}")
    expect(page.locator("#counts")).to_contain_text("/2 images")
    expect(page.locator("#images input.pick")).to_have_count(2)  # the child's two cells
    _shot(page, "refined-job-page.png")
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}) as http:
        cells = http.get(f"/v1/jobs/{child}/images").json()["items"]
    assert [(c["parent_index"], c["steps"], c["seed"]) for c in cells] == [(0, 3, 5), (2, 3, 7)]
    page.goto(f"{base}/web/jobs/{parent}")
    expect(page.locator(".child-link")).to_have_text(child)
    page.close()
