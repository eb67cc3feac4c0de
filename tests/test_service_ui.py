"""The browser UI end to end in headless Chromium against a real `permed serve`: sign in with a token,
upload the example VCF with a medication, wait for the job, search the list, open the report, check its
actionable section, look up one drug; then a file holding two patients, switching between them. A
screenshot is kept in test-artefacts/ (or $PERMED_TEST_ARTEFACTS)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import httpx
from helpers import ChromiumPage, Served, cli, example_vcf, two_patient_text
from PIL import Image

ARTEFACTS = Path(os.environ.get("PERMED_TEST_ARTEFACTS", Path(__file__).parent.parent / "test-artefacts"))


def test_browser_ui_end_to_end(tmp_path):
    data = tmp_path / "data"
    lab = cli("token", "create", "--role", "lab", "--data-dir", data).stdout.strip()
    clinician = cli("token", "create", "--role", "clinician", "--data-dir", data).stdout.strip()
    with Served(data) as server, ChromiumPage(1280, 1100) as browser:
        page = browser.page
        page.goto(server.url + "/")
        assert page.title() == "permed"
        page.fill("#token", "pmd_not-a-token")
        page.click("#signin-form button")
        page.wait_for_selector("#signin-error:has-text('sign in again')")
        assert page.is_hidden("#app")

        page.fill("#token", lab)
        page.click("#signin-form button")
        page.wait_for_selector("#upload:visible")
        assert "(lab)" in page.inner_text("#who") and "knowledge base" in page.inner_text("#kb")
        page.set_input_files("#vcf", str(example_vcf()))
        page.fill("#meds", "clopidogrel")
        page.click("#upload-button")
        page.wait_for_selector("#upload-status:has-text('Uploaded as sample')")
        assert page.get_attribute("#upload-progress", "value") == "100"
        two = httpx.post(f"{server.url}/api/v1/samples", content=two_patient_text().encode(),
                         headers={"Authorization": f"Bearer {lab}", "X-Filename": "two-patients.vcf"})
        assert two.status_code == 201 and two.json()["id"] == 2  # runs while the test goes on
        row = "#sample-rows tr[data-sample='1']"
        page.wait_for_selector(f"{row} .state-done", timeout=180_000)  # the worker ran the job
        assert "clopidogrel" in page.inner_text(row) and example_vcf().name in page.inner_text(row)
        assert page.locator(f"{row} button").count() == 0  # a lab token follows jobs; reports are the clinician's

        page.fill("#search", "no-such-file")
        page.wait_for_selector(f"{row}", state="detached")
        assert "0 of 0" in page.inner_text("#samples-count")
        page.fill("#search", example_vcf().name[:5])
        page.wait_for_selector(row)

        page.click("#signout")
        page.fill("#token", clinician)
        page.click("#signin-form button")
        page.wait_for_selector(f"{row} .state-done")
        assert page.is_hidden("#upload")  # a clinician reads; only lab and admin upload
        page.click(f"{row} button")
        report = page.frame_locator("#report-frame")
        actionable = report.locator("#actionable")
        actionable.wait_for(state="attached")  # a sandboxed frame without scripts: never "visible" to Playwright
        assert "clopidogrel" in actionable.inner_text().lower()
        assert "CYP2C19" in report.locator("body").inner_text()
        assert page.is_hidden("#vcf-sample")  # one patient in this file: nothing to choose

        page.fill("#drug", "clopidogrel")
        page.click("#advice-form button")
        advice = page.locator("#advice .drug[data-drug='clopidogrel']")
        advice.wait_for()
        text = advice.inner_text()
        assert "actionable" in advice.get_attribute("class") and "Avoid" in text and "CYP2C19" in text
        assert "On the patient's medication list" in text
        page.fill("#drug", "water")
        page.click("#advice-form button")
        page.wait_for_selector("#advice .error:has-text('no guideline')")
        page.fill("#drug", "clopidogrel")
        page.click("#advice-form button")
        advice.wait_for()

        ARTEFACTS.mkdir(parents=True, exist_ok=True)
        shot = ARTEFACTS / "service-ui.png"
        page.screenshot(path=str(shot), full_page=True)
        # the frame must paint the report, not only hold it (a reused sandboxed frame once stayed blank)
        frame_png = page.locator("#report-frame").screenshot()
        assert len(Image.open(io.BytesIO(frame_png)).convert("L").getcolors(256)) > 20

        # the same report in Chinese, rendered by the job alongside the English one
        page.select_option("#report-lang", "zh")
        page.frame_locator("#report-frame").locator("html[lang='zh'] #actionable").wait_for(state="attached")
        assert shot.stat().st_size > 20_000

        # a file with two patients: choose one, and the report and the advice follow the choice
        page.select_option("#report-lang", "en")
        page.fill("#search", "")
        two_row = "#sample-rows tr[data-sample='2']"
        page.wait_for_selector(f"{two_row} .state-done", timeout=180_000)
        page.click(f"{two_row} button")
        page.wait_for_selector("#vcf-sample:visible")
        assert page.locator("#vcf-sample option").all_inner_texts() == ["PAT-A", "PAT-B"]
        body = page.frame_locator("#report-frame").locator("body")
        body.locator("text=PAT-A").first.wait_for(state="attached")
        page.fill("#drug", "clopidogrel")
        page.click("#advice-form button")
        page.locator("#advice .drug.actionable[data-drug='clopidogrel']").wait_for()
        page.select_option("#vcf-sample", "PAT-B")
        body = page.frame_locator("#report-frame").locator("body")
        body.locator("text=PAT-B").first.wait_for(state="attached")
        assert "PAT-A" not in body.inner_text()
        assert page.locator("#advice").inner_text() == ""  # the other patient's advice is cleared
        page.click("#advice-form button")
        advice_b = page.locator("#advice .drug[data-drug='clopidogrel']")
        advice_b.wait_for()
        assert "actionable" not in advice_b.get_attribute("class") and "no change advised" in advice_b.inner_text()
        page.screenshot(path=str(ARTEFACTS / "service-ui-two-patients.png"))
    # the browser logs the two refusals the test provoked (wrong token, unknown drug), and nothing else
    assert browser.errors == [f"Failed to load resource: the server responded with a status of {code}"
                              for code in ("401 (Unauthorized)", "404 (Not Found)")], browser.errors
    assert all(u.startswith((server.url, "about:", "blob:")) for u in browser.external), browser.external
