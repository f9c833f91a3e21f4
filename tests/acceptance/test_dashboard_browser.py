"""The dashboard in a real browser (headless Chromium, see ``browser``), against a folder store that
real workers are processing: the counts move, a failure opens with its traceback and its lineage,
retry is refused without the token and done with it, a store that disappears turns the banner
red, and every view fits an 800 px window."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from acceptance_helpers import Doves, Running, write_state
from browser import chromium, fits_width, require_browser, text_of, wait_until
from test_dashboard import api_status, start_dashboard
from test_dashboard_api import get_json, token_of

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

pytestmark = pytest.mark.slow

#: The width the page must be usable at.
NARROW_PX = 800


@pytest.fixture
def driver() -> Iterator[WebDriver]:
    require_browser()
    with chromium(NARROW_PX, 1000) as opened:
        yield opened


def submit_work(doves: Doves, store: Path, machines_py: Path, incoming: Path, tick_log: Path) -> None:
    """Machines that take a few seconds each (so counts move while the page is open) and one that fails."""
    incoming.mkdir()
    for index in range(6):
        write_state(incoming, f"job-{index}.state", "counted",
                    {"id": f"job-{index}", "count": 15, "sleep": 0.1, "log": str(tick_log)})
    write_state(incoming, "doomed.state", "always-fails", {"order": 42})
    result = doves("submit", str(store), str(incoming), "--machines", str(machines_py))
    assert result.returncode == 0, result.stderr


def number(driver: WebDriver, element_id: str) -> int | None:
    text = text_of(driver, element_id)
    return int(text) if text.isdigit() else None


def test_an_operator_watches_the_fleet_and_acts_on_a_failure(
        doves: Doves, start_doves: Callable[..., Running], store_dir: Path, machines_py: Path, tmp_path: Path,
        tick_log: Path, driver: WebDriver) -> None:
    from selenium.webdriver.common.by import By

    submit_work(doves, store_dir, machines_py, tmp_path / "incoming", tick_log)
    workers = start_doves("run", str(store_dir), "--watch", "--workers", "2", "--max-attempts", "1",
                          "--machines", str(machines_py))
    dashboard, base = start_dashboard(start_doves, str(store_dir))
    token = token_of(dashboard)

    # The counts move while the workers run.
    driver.get(base)
    first = wait_until(lambda: number(driver, "done") is not None and number(driver, "done"), "a first count")
    wait_until(lambda: (number(driver, "done") or 0) > first, "the done count to move")
    wait_until(lambda: "alive" in text_of(driver, "workers"), "the live workers")
    assert "counted" in text_of(driver, "by-state") and fits_width(driver)

    # Open the failure, then its lineage.
    wait_until(lambda: number(driver, "failed") == 1, "the failure")
    driver.find_element(By.ID, "nav-failures").click()
    row = wait_until(lambda: driver.find_element(By.LINK_TEXT, "doomed.state"), "the failure in the list")
    assert "this machine always fails" in text_of(driver, "list") and fits_width(driver)
    row.click()
    wait_until(lambda: text_of(driver, "state-name") == "doomed.state", "the failure's page")
    wait_until(lambda: "RuntimeError: this machine always fails" in text_of(driver, "state-traceback"),
               "the traceback")
    assert '"order": 42' in text_of(driver, "state-payload") and fits_width(driver)
    driver.find_element(By.ID, "state-lineage").click()
    wait_until(lambda: text_of(driver, "lineage-machine") == "doomed.state", "the failure's lineage")
    assert "failed" in text_of(driver, "lineage") and fits_width(driver)
    # A state of a counted machine that is done has a successor: its lineage is a timeline of several.
    done = wait_until(lambda: get_json(base + "api/states?state=counted&status=done&limit=1")[1]["states"],
                      "a done step of a counted machine")
    driver.get(base + "#/lineage/" + done[0]["name"])
    wait_until(lambda: len(driver.find_elements(By.CSS_SELECTOR, "#lineage tr")) > 1, "a longer lineage")
    assert fits_width(driver)

    # Retry: refused without the token, done with it.
    driver.get(base + "#/state/doomed.state")
    retry = wait_until(lambda: driver.find_element(By.ID, "state-retry"), "the retry button")
    wait_until(lambda: retry.is_displayed(), "the retry button shown")
    retry.click()
    wait_until(lambda: "Refused (403)" in text_of(driver, "notice"), "the refusal")
    assert "token" in text_of(driver, "notice")
    assert api_status(base)["failed"] == 1

    driver.get(base + "#token=" + token)
    wait_until(lambda: text_of(driver, "access") == "actions unlocked", "the page to take the token")
    assert token not in driver.current_url  # dropped from the address bar once kept
    driver.get(base + "#/state/doomed.state")
    retry = wait_until(lambda: driver.find_element(By.ID, "state-retry"), "the retry button")
    wait_until(lambda: retry.is_displayed(), "the retry button shown")
    retry.click()
    wait_until(lambda: "1 of 1 failed state(s) pending again" in text_of(driver, "notice"), "the retry")
    dashboard.wait_for_output("retry from the dashboard")

    for running in (workers, dashboard):
        running.send(signal.SIGTERM)
    for running in (workers, dashboard):
        assert running.wait() in (0, 1), running.output


def test_the_banner_turns_red_when_the_store_disappears(
        doves: Doves, start_doves: Callable[..., Running], store_dir: Path, machines_py: Path, tmp_path: Path,
        tick_log: Path, driver: WebDriver) -> None:
    from selenium.webdriver.common.by import By

    submit_work(doves, store_dir, machines_py, tmp_path / "incoming", tick_log)
    _, base = start_dashboard(start_doves, str(store_dir))
    driver.get(base)
    banner = wait_until(lambda: driver.find_element(By.ID, "banner"), "the banner")
    wait_until(lambda: "store read" in banner.text, "a first sample")
    assert "bad" not in (banner.get_attribute("class") or "")

    aside = tmp_path / "aside"
    store_dir.rename(aside)
    wait_until(lambda: "bad" in (banner.get_attribute("class") or ""), "the banner to turn red")
    assert "The store cannot be read" in banner.text
    color = driver.execute_script("return getComputedStyle(arguments[0]).backgroundColor;", banner)
    assert color in ("rgb(197, 48, 48)", "rgb(155, 44, 44)")  # the failure red, light or dark

    aside.rename(store_dir)
    wait_until(lambda: "bad" not in (banner.get_attribute("class") or ""), "the banner to recover")
