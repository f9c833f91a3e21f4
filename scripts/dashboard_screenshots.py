"""Take the README's screenshots of the dashboard (``make screenshots``): its main views, in the
headless Chromium the browser tests use (``tests/acceptance/browser.py``), against a folder store
that real workers are processing, some of whose machines fail.

Usage: ``.venv/bin/python scripts/dashboard_screenshots.py [OUTPUT_DIR]`` (default ``docs/``).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "acceptance"))

from browser import chromium, missing, wait_until  # noqa: E402

#: Machines of an online shop: orders go through three states, a few payments fail.
MACHINES = '''
import time

from martian_doves import machine


@machine("order-received")
def received(payload):
    time.sleep(0.4)
    return ("payment", payload)


@machine("payment")
def payment(payload):
    time.sleep(0.6)
    if payload["order"] % 7 == 3:
        raise ValueError(f"card declined for order {payload['order']}: insufficient funds")
    return ("shipping", {**payload, "paid": True})


@machine("shipping")
def shipping(payload):
    time.sleep(0.8)
    return None
'''
#: Seconds the workers run before the first screenshot: some orders done, some failed, some running.
WARM_UP_SECONDS = 15.0
#: The token the pages are opened with (a screenshot shows no token, only that actions are unlocked).
TOKEN = "screenshots-token-not-a-secret"


def doves(*args: str) -> list[str]:
    return [sys.executable, "-m", "martian_doves", *args]


def failed(base: str) -> int:
    """How many states the dashboard's last sample counts failed."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(base + "api/status", timeout=10) as answer:
        return int(json.load(answer).get("failed", 0))


def full_page(driver: Any, path: Path, width: int) -> None:
    """A screenshot of the whole page at ``width`` pixels (the window grown to the page's height)."""
    driver.set_window_size(width, 900)
    time.sleep(0.3)
    height = int(driver.execute_script("return document.documentElement.scrollHeight;"))
    driver.set_window_size(width, max(600, height + 20))
    time.sleep(0.5)
    driver.save_screenshot(str(path))
    print(f"wrote {path}")


def main() -> int:
    reason = missing()
    if reason is not None:
        print(f"cannot take screenshots: {reason}", file=sys.stderr)
        return 2
    output = Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "docs")
    output.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="doves-screenshots-"))
    store, incoming, machines = work / "store", work / "incoming", work / "shop.py"
    incoming.mkdir()
    machines.write_text(MACHINES)
    for order in range(1, 201):
        (incoming / f"order-{order:03d}.state").write_text(
            json.dumps({"state": "order-received", "payload": {"order": order, "items": order % 4 + 1}}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOVES_")}
    subprocess.run(doves("submit", str(store), str(incoming), "--machines", str(machines)), check=True, env=env,
                   cwd=work, capture_output=True)
    started = []
    try:
        started.append(subprocess.Popen(doves("run", str(store), "--watch", "--workers", "2", "--concurrency", "2",
                                              "--max-attempts", "1",
                                              "--machines", str(machines), "--name", "shop"),
                                        env=env, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        dashboard = subprocess.Popen(doves("dashboard", str(store), "--port", "0", "--refresh-seconds", "0.5"),
                                     env={**env, "DOVES_DASHBOARD_TOKEN": TOKEN}, cwd=work, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        started.append(dashboard)
        assert dashboard.stderr is not None
        line = dashboard.stderr.readline()
        match = re.search(r"dashboard on (http://\S+/)", line)
        if match is None:
            print(f"the dashboard did not start: {line}", file=sys.stderr)
            return 1
        base = match.group(1)
        threading.Thread(target=dashboard.stderr.read, daemon=True).start()  # the rest of its log, unread
        time.sleep(WARM_UP_SECONDS)
        wait_until(lambda: failed(base) >= 2, "a few failures")
        with chromium(1200, 900) as driver:
            from selenium.webdriver.common.by import By

            driver.get(base + "#token=" + TOKEN)
            wait_until(lambda: driver.find_elements(By.CSS_SELECTOR, "#workers tr"), "the workers")
            time.sleep(1.5)  # a few samples for the throughput chart
            full_page(driver, output / "dashboard-overview.png", 1200)
            driver.get(base + "#/failures")
            failure = wait_until(lambda: driver.find_element(By.CSS_SELECTOR, "#list td.name a"), "a failure")
            name = failure.text
            full_page(driver, output / "dashboard-failures.png", 1200)
            driver.get(base + "#/state/" + name)
            wait_until(lambda: driver.find_element(By.ID, "state-traceback").text, "the traceback")
            full_page(driver, output / "dashboard-state.png", 1200)
            driver.get(base + "#/lineage/order-001.state")
            wait_until(lambda: len(driver.find_elements(By.CSS_SELECTOR, "#lineage tr")) >= 3, "a whole lineage")
            full_page(driver, output / "dashboard-lineage.png", 1200)
            driver.get(base + "#/")
            wait_until(lambda: driver.find_elements(By.CSS_SELECTOR, "#by-state tr"), "the overview")
            full_page(driver, output / "dashboard-800px.png", 800)
    finally:
        for process in started:
            process.send_signal(signal.SIGTERM)
        for process in started:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
