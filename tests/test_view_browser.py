"""`rft view` in a real headless browser: Debian's Chromium driven by Selenium.

Nothing is downloaded at test time: Selenium is pointed at the system chromedriver
(``Service('/usr/bin/chromedriver')``, ``SE_OFFLINE=true``). ``.ci/run`` installs
``chromium`` and ``chromium-driver``; without them the test skips and says so.

``RFT_VIEW_SCREENSHOT=path.png`` also saves a screenshot of the Rollouts tab (how
docs/img/view.png is made); ``RFT_VIEW_RUN=DIR`` points it at another run and
``RFT_VIEW_HASH`` sets the filters (``#step=5&sort=spread``).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from test_view import rollout_lines, write_run

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"

pytestmark = pytest.mark.skipif(
    not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
    reason="needs Debian's chromium and chromium-driver (apt-get install -y chromium chromium-driver; .ci/run does)",
)


@contextmanager
def serve(run_dirs: list[Path]) -> Iterator[str]:
    """The viewer on a free loopback port in a thread; yields its URL."""
    import uvicorn

    from rft.cli.view import bind
    from rft.view import create_app

    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(create_app(run_dirs), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.time() + 15
    while not server.started:
        assert time.time() < deadline, "the viewer did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from selenium import webdriver  # the dev extra; only Chromium itself may be missing
    from selenium.webdriver.chrome.service import Service

    os.environ["SE_OFFLINE"] = "true"  # never let Selenium Manager download a driver
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # to assert the page logged no error
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver: Any, css: str, *, text: str | None = None, timeout: float = 10) -> Any:
    """The first element matching ``css`` (that contains ``text``), waiting for the page to render it."""
    from selenium.webdriver.common.by import By

    deadline = time.time() + timeout
    while True:
        for el in driver.find_elements(By.CSS_SELECTOR, css):
            if text is None or text in el.text:
                return el
        if time.time() > deadline:
            logs = driver.execute_script("return document.body.innerText.slice(0, 2000)")
            raise AssertionError(
                f"no {css!r}{f' with {text!r}' if text else ''} on the page after {timeout}s; page text:\n{logs}"
            )
        time.sleep(0.1)


def test_the_page_shows_completions_grader_reasons_evals_and_curves_and_follows_growth(browser, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    run = write_run(tmp_path / "run", finished=False)
    with serve([run]) as url:
        browser.get(url)
        # Rollouts: a completion and a grader's reason, rendered
        wait_for(browser, "tr.completion", text="banana banana banana")
        reason = wait_for(browser, ".reason", text="reward hack: format passes on fruit")
        assert reason.is_displayed()
        # a filter from the page: text search
        q = browser.find_element(By.CSS_SELECTOR, "#filters [name=q]")
        q.send_keys("banana")
        browser.find_element(By.CSS_SELECTOR, "#filters button[type=submit]").click()
        wait_for(browser, "#count", text="1 group match")
        # a completion opens in full with its prompt
        browser.find_element(By.CSS_SELECTOR, "tr.completion.match").click()
        full = wait_for(browser, "#full-completion")
        assert full.text == "banana banana banana"
        modal = browser.find_element(By.ID, "modal-body").text
        assert "Answer with a number." in modal and "fruit_counter" in modal and "[object" not in modal
        browser.find_element(By.ID, "modal-close").click()
        # Evals: the phases side by side, the regressed row marked
        browser.find_element(By.CSS_SELECTOR, "#tabs button[data-tab=evals]").click()
        table = wait_for(browser, "table.eval-rows", text="The answer is 5.")
        assert "base" in table.text and "rft" in table.text
        assert browser.find_elements(By.CSS_SELECTOR, "table.eval-rows tr.regressed")
        assert "mean reward" in wait_for(browser, "table.eval-summary").text
        # Curves: the reward per grader chart has lines
        browser.find_element(By.CSS_SELECTOR, "#tabs button[data-tab=curves]").click()
        chart = wait_for(browser, "[data-chart=reward]", text="exact_match")
        assert len(chart.find_elements(By.CSS_SELECTOR, "path")) >= 3
        # hovering a step shows its values and that step's samples (logged step N = rollout step N-1)
        svg = chart.find_element(By.CSS_SELECTOR, "svg")
        ActionChains(browser).move_to_element(svg).perform()
        tip = wait_for(browser, ".chart .tip", text="step ")
        assert "exact_match" in tip.text and "[object" not in tip.text
        logged = int(tip.text.split()[1])
        wait_for(browser, "#hover-samples", text=f"rollout step {logged - 1}")
        # Live: the trainer appends a step; the page shows it without a reload
        browser.find_element(By.CSS_SELECTOR, "#tabs button[data-tab=rollouts]").click()
        with (run / "rollouts.jsonl").open("a") as f:
            for r in rollout_lines(steps=1, start=3):
                f.write(json.dumps(r) + "\n")
        wait_for(browser, "#filters [name=step] option[value='3']", timeout=8)
        wait_for(browser, "#live", text="32 rollouts", timeout=8)
        errors = [e for e in browser.get_log("browser") if e.get("level") == "SEVERE"]
        assert not errors, errors


def test_a_screenshot_of_the_page(browser, tmp_path):
    """How the README's docs/img/view.png is made (``RFT_VIEW_SCREENSHOT``); otherwise into tmp."""
    target = Path(os.environ.get("RFT_VIEW_SCREENSHOT") or tmp_path / "view.png")
    run = Path(os.environ["RFT_VIEW_RUN"]) if os.environ.get("RFT_VIEW_RUN") else write_run(tmp_path / "run")
    with serve([run]) as url:
        browser.set_window_size(1400, 900)
        browser.get(url + os.environ.get("RFT_VIEW_HASH", "#tab=rollouts&sort=spread"))
        wait_for(browser, "tr.completion")
        time.sleep(0.5)
        target.parent.mkdir(parents=True, exist_ok=True)
        assert browser.save_screenshot(str(target))
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_an_agent_episode_shows_every_turn_its_tool_calls_and_state(browser, tmp_path):
    from selenium.webdriver.common.by import By

    run = write_run(tmp_path / "run")
    episode = {
        "step": 9,
        "index": 0,
        "prompt": [{"role": "user", "content": "How many pears are in stock?"}],
        "completion": "We have 47 pears.",
        "reward": 1.5,
        "graders": {"task_success": {"score": 1.0, "kind": "score"}},
        "completion_messages": [
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [{"type": "function", "function": {"name": "stock", "arguments": {"item": "pear"}}}],
            },
            {"role": "tool", "name": "stock", "content": "47"},
            {"role": "assistant", "content": "We have 47 pears."},
        ],
        "episode": {"environment": "shop", "turns": 2, "tool_calls": 1, "tool_errors": 0, "success": True},
        "state": {"calls": [["stock", "pear"]]},
    }
    with (run / "rollouts.jsonl").open("a") as f:
        f.write(json.dumps(episode) + "\n")
    with serve([run]) as url:
        browser.get(url + "#step=9")
        row = wait_for(browser, "tr.completion", text="stock(item='pear') → [tool] 47 → We have 47 pears.")
        row.click()
        wait_for(browser, "#modal-body", text="Final state")
        modal = browser.find_element(By.ID, "modal-body").text
        assert "shop · 2 turn(s) · 1 tool call(s) · 0 tool error(s) · success: true" in modal
        assert "TOOL · STOCK" in modal.upper() and '→ stock({"item":"pear"})' in modal
        assert '"pear"' in modal and "[object" not in modal
