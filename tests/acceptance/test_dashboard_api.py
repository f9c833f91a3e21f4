"""``doves dashboard``'s JSON views and actions over real HTTP: lists, one state, a lineage, workers,
counts by state name; retry and delete with the token printed at start-up, refused without it;
``/healthz`` and the banner's error while the store is gone. Timeouts are hang guards only."""

from __future__ import annotations

import json
import re
import shutil
import signal
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from acceptance_helpers import Doves, Running, one_line
from test_dashboard import QUICK_TIMEOUT, api_status, fetch, start_dashboard, submit_seed_and_doomed

pytestmark = pytest.mark.slow

_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def get_json(url: str) -> tuple[int, dict[str, Any]]:
    status, _, body = fetch(url)
    document: dict[str, Any] = json.loads(body)
    return status, document


def post(url: str, body: Any, *, token: str | None = None, headers: dict[str, str] | None = None,
         raw: bytes | None = None) -> tuple[int, dict[str, Any]]:
    """(status, JSON answer) of one POST of ``body`` as JSON (``raw`` bytes instead, if given)."""
    sent = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {}),
            **(headers or {})}
    request = urllib.request.Request(url, data=raw if raw is not None else json.dumps(body).encode(),
                                     headers=sent, method="POST")
    try:
        with _opener.open(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def token_of(running: Running) -> str:
    """The token the dashboard printed at start-up."""
    running.wait_for(lambda: "#token=" in running.output, "the token")
    match = re.search(r"#token=(\S+)", running.output)
    assert match is not None
    return match.group(1)


def failed_count(doves: Doves, store: str) -> int:
    result = doves("status", store, "--json")
    assert result.returncode == 0, result.stderr
    count: int = json.loads(result.stdout)["failed"]
    return count


def check_views_and_actions(doves: Doves, running: Running, base: str, store: str) -> None:
    """The views of a store where the seed's examples ran and ``doomed.state`` failed, and the actions on it."""
    token = token_of(running)
    running.wait_for(lambda: api_status(base).get("failed") == 1, "the failure in the sample")

    status, page = get_json(base + "api/states?status=failed")
    assert status == 200 and [s["name"] for s in page["states"]] == ["doomed.state"] and page["more"] is False
    assert page["states"][0]["code"] == "tick_failed" and "payload" not in page["states"][0]
    status, found = get_json(base + "api/states?q=ALWAYS+FAILS&limit=1")
    assert status == 200 and [s["name"] for s in found["states"]] == ["doomed.state"]
    status, one = get_json(base + "api/states/doomed.state")
    assert status == 200 and one["failure"]["traceback"].rstrip().endswith("this machine always fails")
    assert one["status"] == "failed" and one["settled"] is True and one["payload"] == {}
    status, lineage = get_json(base + "api/states/" + quote("countdown.state-2") + "/lineage")
    assert status == 200 and lineage["machine"] == "countdown.state" and lineage["status"] == "done"
    assert [step["name"] for step in lineage["steps"]][:3] == ["countdown.state", "countdown.state-1",
                                                                "countdown.state-2"]
    assert all(step["worker"] for step in lineage["steps"])
    counts = {row["state"]: row["counts"] for row in get_json(base + "api/by-state")[1]["states"]}
    assert counts["always-fails"] == {"failed": 1} and counts["countdown"] == {"done": 5}
    assert {row["state"]: row["counts"] for row in api_status(base)["by_state"]} == counts
    assert "workers" in get_json(base + "api/workers")[1]

    assert get_json(base + "api/states/nothing.state") == (404, {"error": "no state named nothing.state"})
    status, error = get_json(base + "api/states?limit=1000")
    assert status == 400 and "limit" in error["error"]

    retry = base + "api/retry"
    for answer in (post(retry, {"names": ["doomed.state"]}),
                   post(retry, {"names": ["doomed.state"]}, token="not-the-token-at-all"),
                   post(retry, {"names": ["doomed.state"]}, token=token, headers={"Origin": "http://evil.example"}),
                   post(retry, {"names": ["doomed.state"]}, token=token, headers={"Sec-Fetch-Site": "cross-site"})):
        assert answer[0] == 403 and answer[1]["error"], answer
    assert post(retry, None, token=token, raw=b"names=doomed.state",
                headers={"Content-Type": "application/x-www-form-urlencoded"})[0] == 415
    assert post(retry, {"names": "doomed.state"}, token=token)[0] == 400
    assert failed_count(doves, store) == 1  # nothing changed

    assert post(retry, {"names": ["doomed.state"]}, token=token) == (200, {"asked": 1, "retried": 1})
    assert failed_count(doves, store) == 0
    assert "retry from the dashboard" in running.output  # every action is logged

    assert post(base + "api/forget", {"names": ["hello.state"]})[0] == 403
    assert post(base + "api/forget", {"names": ["hello.state"]}, token=token) == (200, {"asked": 1, "forgotten": 1})
    assert get_json(base + "api/states/hello.state")[0] == 404
    # Pending again after the retry: not ended, so kept whole.
    assert post(base + "api/forget", {"names": ["doomed.state"]}, token=token)[1]["forgotten"] == 0


def test_views_and_actions_on_a_folder_store(doves: Doves, start_doves: Callable[..., Running], store_dir: Path,
                                             machines_py: Path, tmp_path: Path) -> None:
    submit_seed_and_doomed(doves, str(store_dir), machines_py, tmp_path / "incoming")
    running, base = start_dashboard(start_doves, str(store_dir))
    check_views_and_actions(doves, running, base, str(store_dir))
    running.send(signal.SIGTERM)
    assert running.wait() == 0, running.output


def test_views_and_actions_on_postgresql(doves: Doves, start_doves: Callable[..., Running], pg_url: str,
                                         machines_py: Path, tmp_path: Path) -> None:
    submit_seed_and_doomed(doves, pg_url, machines_py, tmp_path / "incoming")
    running, base = start_dashboard(start_doves, pg_url)
    check_views_and_actions(doves, running, base, pg_url)
    running.send(signal.SIGTERM)
    assert running.wait() == 0, running.output


def test_read_only_and_chosen_tokens(doves: Doves, start_doves: Callable[..., Running], store_dir: Path,
                                     machines_py: Path, tmp_path: Path) -> None:
    submit_seed_and_doomed(doves, str(store_dir), machines_py, tmp_path / "incoming")
    running, base = start_dashboard(start_doves, str(store_dir), "--read-only")
    running.wait_for_output("read-only")
    assert "#token=" not in running.output and api_status(base)["actions"] == "read-only"
    status, answer = post(base + "api/retry", {"names": ["doomed.state"]}, token="anything-at-all-long-enough")
    assert status == 403 and "read-only" in answer["error"]
    running.cleanup()

    chosen = "a-chosen-token-long-enough"
    env = {"DOVES_DASHBOARD_TOKEN": chosen, "DOVES_DASHBOARD_PORT": "0", "DOVES_DASHBOARD_REFRESH_SECONDS": "0.2"}
    running, base = start_dashboard(start_doves, str(store_dir), env=env)
    assert chosen not in running.output  # the operator knows it: it is not printed
    assert post(base + "api/retry", {"names": ["doomed.state"]}, token=chosen) == (200, {"asked": 1, "retried": 1})
    running.cleanup()

    short = doves("dashboard", str(store_dir), "--port", "0", "--token", "short", timeout=QUICK_TIMEOUT)
    assert short.returncode == 2
    assert one_line(short.stderr).startswith("doves: error: --token must be at least 16 characters")


def test_a_store_that_disappears_turns_healthz_and_the_banner_red(doves: Doves, start_doves: Callable[..., Running],
                                                                  store_dir: Path, machines_py: Path,
                                                                  tmp_path: Path) -> None:
    submit_seed_and_doomed(doves, str(store_dir), machines_py, tmp_path / "incoming")
    running, base = start_dashboard(start_doves, str(store_dir))
    status, _, body = fetch(base + "healthz")
    assert (status, body) == (200, b"ok\n")

    aside = tmp_path / "aside"
    shutil.move(str(store_dir), str(aside))  # gone, as when its volume is unmounted
    running.wait_for(lambda: fetch(base + "healthz")[0] == 503, "/healthz to fail")
    status, _, body = fetch(base + "healthz")
    assert body.startswith(b"unhealthy: ") and body.count(b"\n") == 1
    served = api_status(base)
    assert served["error"] and served["done"] == 13  # the last good sample, with the reason it is old

    shutil.move(str(aside), str(store_dir))
    running.wait_for(lambda: fetch(base + "healthz")[0] == 200, "/healthz to recover")
    assert api_status(base)["error"] is None
    running.send(signal.SIGTERM)
    assert running.wait() == 0, running.output
