"""The dashboard in a real headless Chromium (Debian's, driven by Selenium through Debian's
chromedriver): live updates without a reload, a moving progress bar, cancel and delete.

Screenshots are kept in BERTH_TEST_ARTIFACTS (default /tmp/berth-test-artifacts).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import (
    NoSuchElementException,
    StaleElementReferenceException,
    TimeoutException,
)
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from controller.app.daemon import Daemon
from tests.integration.conftest import EXAMPLE_IMAGE_2, Sql, report, wait_for
from tests.integration.sources import APP, dockerfile, make_repo

pytestmark = pytest.mark.integration

ARTIFACTS = Path(os.environ.get("BERTH_TEST_ARTIFACTS", "/tmp/berth-test-artifacts"))
PROBE = ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/"]
HEALTH = {"test": PROBE, "interval_s": 0.5, "timeout_s": 2, "retries": 3}


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    options = Options()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1400,900"):  # fmt: skip
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    yield driver
    driver.quit()


def screenshot(driver: WebDriver, name: str, capsys: pytest.CaptureFixture[str]) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    assert driver.save_screenshot(str(path)), "screenshot"
    report(capsys, f"screenshot: {path}")
    return path


def log_in(driver: WebDriver, daemon: Daemon, secret: str) -> None:
    assert daemon.api is not None
    driver.get(f"http://127.0.0.1:{daemon.api.port}/")
    field = WebDriverWait(driver, 10).until(lambda d: d.find_element(By.ID, "token"))
    field.clear()
    field.send_keys(secret)
    driver.find_element(By.CSS_SELECTOR, "#login-form button").click()
    WebDriverWait(driver, 10).until(lambda d: d.find_element(By.ID, "live").text == "live")


def cell(driver: WebDriver, row_id: str, index: int) -> str | None:
    try:
        return str(driver.find_element(By.ID, row_id).find_elements(By.TAG_NAME, "td")[index].text)
    except (NoSuchElementException, StaleElementReferenceException, IndexError):
        return None


def test_plain_sql_changes_show_within_a_second_and_the_progress_bar_moves(
    sql: Sql,
    start_daemon: Callable[..., Daemon],
    browser: WebDriver,
    capsys: pytest.CaptureFixture[str],
) -> None:
    daemon = start_daemon(api_addr="127.0.0.1:0")
    assert daemon.api is not None
    secret = daemon.api.database.api.create_token("browser", "read")[0]
    sql.insert("web", replicas=3, healthcheck=HEALTH)
    wait_for(lambda: sql.converged("web"), what="web converged")
    log_in(browser, daemon, secret)
    WebDriverWait(browser, 5).until(lambda d: cell(d, "row-web", 3) == "3/3")
    # The nodes: one engine is the node `local`, running web's three replicas.
    WebDriverWait(browser, 10).until(lambda d: cell(d, "node-local", 4) == "3")
    assert cell(browser, "node-local", 2) == "ready"
    browser.execute_script("window.notReloaded = true;")

    started = time.monotonic()
    sql.insert("added-by-sql")
    WebDriverWait(browser, 1.0, poll_frequency=0.02).until(
        lambda d: d.find_elements(By.ID, "row-added-by-sql")
    )
    appeared = time.monotonic() - started
    started = time.monotonic()
    sql("UPDATE deployment_status SET message = 'written by psql' WHERE name = 'web'")
    WebDriverWait(browser, 1.0, poll_frequency=0.02).until(
        lambda d: cell(d, "row-web", 6) == "written by psql"
    )
    changed = time.monotonic() - started
    assert browser.execute_script("return window.notReloaded === true;")
    report(
        capsys,
        f"plain SQL -> page: new row {appeared * 1000:.0f} ms, change {changed * 1000:.0f} ms",
    )

    # a rollout: the bar's value as the page shows it, sampled until the rollout is done
    sql("UPDATE deployments SET image = %s WHERE name = 'web'", [EXAMPLE_IMAGE_2])
    shown: list[tuple[str, int]] = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        row = browser.find_elements(By.ID, "row-web")
        if row:
            sample = (
                str(row[0].get_attribute("data-phase")),
                int(row[0].get_attribute("data-progress") or 0),
            )
            if not shown or shown[-1] != sample:
                shown.append(sample)
                if 0 < sample[1] < 100:
                    screenshot(browser, "dashboard-rollout", capsys)  # the newest such
        status = sql.status("web")
        if (
            status
            and status["observed_generation"] == 2
            and sql.converged("web")
            and shown[-1] == ("active", 100)
        ):
            break
        time.sleep(0.03)
    report(capsys, f"progress bar during the rollout: {shown}")
    moving = [percent for phase, percent in shown if phase != "active"]
    assert len(set(moving)) >= 2 and any(0 < p < 100 for p in moving), shown
    assert shown[-1] == ("active", 100)
    screenshot(browser, "dashboard-overview", capsys)

    # A deployment's page: where each replica runs and its health, kept current (a scale).
    browser.execute_script("location.hash = '#/d/web';")
    sql("UPDATE deployments SET replicas = 2 WHERE name = 'web'")

    def replicas(d: WebDriver) -> list[list[str]]:
        try:
            rows = d.find_elements(By.CSS_SELECTOR, "#replicas tbody tr")
            return [[td.text for td in tr.find_elements(By.TAG_NAME, "td")][2:5] for tr in rows]
        except StaleElementReferenceException:  # the table was drawn again meanwhile
            return []

    try:
        WebDriverWait(browser, 20).until(
            lambda d: replicas(d) == [["local", "running", "healthy"]] * 2
        )
    except TimeoutException:
        raise AssertionError(replicas(browser)) from None


def test_cancel_and_delete_from_the_page_and_readers_see_no_actions(
    sql: Sql,
    start_daemon: Callable[..., Daemon],
    browser: WebDriver,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    daemon = start_daemon(api_addr="127.0.0.1:0")
    assert daemon.api is not None
    writer = daemon.api.database.api.create_token("operator", "write")[0]
    reader = daemon.api.database.api.create_token("viewer", "read")[0]
    make_repo(tmp_path / "slow", {"Dockerfile": dockerfile("sleep 300"), "app.sh": APP})
    sql.insert("slow", image=None, source={"git": {"url": str(tmp_path / "slow")}})
    sql.insert("web")
    build = wait_for(
        lambda: sql("SELECT id FROM builds WHERE deployment = 'slow' AND status = 'running'"),
        timeout_s=60, what="the slow build running",
    )[0]["id"]  # fmt: skip

    log_in(browser, daemon, reader)
    WebDriverWait(browser, 5).until(lambda d: d.find_elements(By.ID, f"build-{build}"))
    assert not browser.find_elements(By.ID, f"cancel-{build}"), "a reader sees no cancel"
    browser.get(browser.current_url.split("#")[0] + "#/d/web")
    WebDriverWait(browser, 5).until(lambda d: d.find_element(By.ID, "detail-name").text == "web")
    assert not browser.find_element(By.ID, "actions").is_displayed()
    browser.find_element(By.ID, "logout").click()

    log_in(browser, daemon, writer)
    browser.get(browser.current_url.split("#")[0] + "#/")
    WebDriverWait(browser, 5).until(lambda d: d.find_element(By.ID, f"cancel-{build}"))
    screenshot(browser, "dashboard-build-queue", capsys)

    def click_cancel(driver: WebDriver) -> bool:
        driver.find_element(By.ID, f"cancel-{build}").click()
        return True

    # the queue re-renders as builds move: find and click at once, again if it went stale
    WebDriverWait(browser, 5, ignored_exceptions=[StaleElementReferenceException]).until(
        click_cancel
    )
    wait_for(
        lambda: sql("SELECT status FROM builds WHERE id = %s", [build])[0]["status"] == "cancelled",
        timeout_s=10, what="cancelled from the page",
    )  # fmt: skip
    WebDriverWait(browser, 5).until(lambda d: cell(d, f"build-{build}", 2) == "cancelled")

    browser.get(browser.current_url.split("#")[0] + "#/d/web")
    WebDriverWait(browser, 5).until(lambda d: d.find_element(By.ID, "detail-name").text == "web")
    WebDriverWait(browser, 10).until(
        lambda d: d.find_element(By.ID, "detail-phase").text == "active"
    )
    WebDriverWait(browser, 5).until(
        lambda d: len(d.find_elements(By.CSS_SELECTOR, "#replicas tbody tr")) >= 1
    )
    replica = browser.find_element(By.CSS_SELECTOR, "#replicas tbody tr")
    assert "local" in replica.text and "running" in replica.text, "where each replica runs"
    screenshot(browser, "dashboard-deployment", capsys)
    browser.find_element(By.ID, "delete").click()
    WebDriverWait(browser, 5).until(lambda d: d.switch_to.alert).dismiss()
    assert sql("SELECT 1 FROM deployments WHERE name = 'web'"), "dismissed: nothing deleted"
    browser.find_element(By.ID, "delete").click()
    alert = WebDriverWait(browser, 5).until(lambda d: d.switch_to.alert)
    assert "Delete deployment web?" in alert.text
    alert.accept()
    wait_for(lambda: not sql("SELECT 1 FROM deployments WHERE name = 'web'"), what="deleted")
    WebDriverWait(browser, 5).until(lambda d: not d.find_elements(By.ID, "row-web"))
