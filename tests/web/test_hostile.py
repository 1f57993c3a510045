"""Hostile requests against a real server: each gets a clear 4xx in bounded time while /healthz keeps answering."""

from __future__ import annotations

import json
import socket
import statistics
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from app.spec import limits
from tests.conftest import LiveServer, start_server

# /healthz while a probe runs: typically under 100 ms; on this project's shared 2-core machine (load 4) a poll
# that waits for the GIL behind the probe's worker thread, or behind the JSON decode of a 7 MB body, takes a
# little longer (300 ms seen with other test suites running beside it), so each single answer gets 1 s (the
# issue's stall was 79 s) and the median 100 ms.
HEALTHZ_MEDIAN_SECONDS = 0.1
HEALTHZ_MAX_SECONDS = 1.0
PROBE_BUDGET_SECONDS = 10.0


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[LiveServer]:
    """One real `lorapedia serve` (uvicorn) for the module, with a short work budget."""
    live = start_server(tmp_path_factory.mktemp("hostile") / "var", env={"LORAPEDIA_WORK_SECONDS": "2"})
    yield live
    live.stop()


def while_healthz_is_polled(server: LiveServer, probe: Callable[[], httpx.Response]) -> tuple[httpx.Response, float, list[float]]:
    """Run `probe`, polling /healthz meanwhile; return the probe's answer, its duration and the healthz latencies."""
    latencies: list[float] = []
    done = threading.Event()

    def poll() -> None:
        with httpx.Client(base_url=server.url, timeout=5) as health:
            while not done.is_set():
                started = time.perf_counter()
                assert health.get("/healthz").status_code == 200
                latencies.append(time.perf_counter() - started)
                time.sleep(0.02)

    poller = threading.Thread(target=poll)
    poller.start()
    time.sleep(0.1)
    started = time.perf_counter()
    try:
        response = probe()
    finally:
        elapsed = time.perf_counter() - started
        time.sleep(0.1)
        done.set()
        poller.join()
    return response, elapsed, latencies


def assert_healthz_answered(latencies: list[float], what: str) -> None:
    """/healthz kept answering promptly while `what` ran."""
    shown = ", ".join(f"{value * 1000:.0f}" for value in sorted(latencies)[-5:])
    assert latencies and statistics.median(latencies) < HEALTHZ_MEDIAN_SECONDS, f"{what}: slowest healthz (ms) {shown}"
    assert max(latencies) < HEALTHZ_MAX_SECONDS, f"{what}: slowest healthz (ms) {shown}"


def post(server: LiveServer, path: str, json_body: object = None, **kwargs) -> Callable[[], httpx.Response]:
    if json_body is not None:  # encoded now: encoding 7 MB while healthz is timed would hold this process's GIL
        kwargs |= {"content": json.dumps(json_body).encode(), "headers": {"content-type": "application/json"}}
    return lambda: httpx.post(server.url + path, timeout=PROBE_BUDGET_SECONDS * 3, **kwargs)


def get(server: LiveServer, path: str, **kwargs) -> Callable[[], httpx.Response]:
    return lambda: httpx.get(server.url + path, timeout=PROBE_BUDGET_SECONDS * 3, **kwargs)


def page_token(server: LiveServer) -> dict[str, object]:
    """A form's CSRF cookie and token, as a browser gets them from a page."""
    page = httpx.get(server.url + "/explain")
    token = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    return {"cookies": page.cookies, "data_token": token}


def explain_form(server: LiveServer, adapter_config: dict) -> Callable[[], httpx.Response]:
    session = page_token(server)
    data = {"adapter_config": json.dumps(adapter_config), "csrf_token": session["data_token"]}
    return lambda: httpx.post(server.url + "/explain", data=data, cookies=session["cookies"], timeout=PROBE_BUDGET_SECONDS * 3)


def probes(server: LiveServer) -> dict[str, tuple[Callable[[], httpx.Response], int, str]]:
    """name -> (request, expected status, words of the reason); explain answers 200 listing what peft would reject."""
    tiny = {"peft_type": "LORA", "base_model_name_or_path": "tiny-llama"}
    many_keys = {f"model.layers.{index}.self_attn.q_proj": 4 for index in range(limits.MAX_PATTERN_KEYS + 1)}
    many_regexes = {f"layers\\.{index}\\.(q|v)_proj": 4 for index in range(limits.MAX_REGEX_PATTERN_KEYS + 1)}
    huge_list = ["q_proj"] * (limits.MAX_NAMES + 1)
    deep_row = '{"prompt": ' + "[" * 5000 + "]" * 5000 + ', "response": "x"}\n'
    return {
        "explain form, (.*)*x": (explain_form(server, {**tiny, "target_modules": "(.*)*x"}), 200, "match no module"),
        "explain api, (.*)*x": (post(server, "/api/explain", json_body={"adapter_config": {**tiny, "target_modules": "(.*)*x"}}), 200, "match no module"),
        "calculator link, (.*){7}x": (get(server, "/calculator", params={"model": "tiny-llama", "target_modules": "(.*){7}x"}), 422, "match no module"),
        "lookahead that backtracks": (post(server, "/api/calc", json_body={"model": "tiny-llama", "lora": {"target_modules": r"(.|.)+(?<=y)"}}), 422, "backtracking"),
        "too many target names": (post(server, "/api/calc", json_body={"model": "llama-3.1-70b", "lora": {"target_modules": huge_list}}), 422, "at most 2,048"),
        "a 7 MB module name": (post(server, "/api/jobs", json_body={"model": "tiny-llama", "dataset": "addition", "lora": {"target_modules": ["x" * 7_000_000]}}), 422, "at most 256"),
        "too many rank_pattern keys": (post(server, "/api/calc", json_body={"model": "llama-3.1-70b", "lora": {"rank_pattern": many_keys}}), 422, "at most 2,048"),
        "too many rank_pattern regexes": (post(server, "/api/calc", json_body={"model": "llama-3.1-70b", "lora": {"rank_pattern": many_regexes}}), 422, "at most 256"),
        "a JSONL row nested 5,000 deep": (post(server, "/api/jobs", json_body={"model": "tiny-llama", "dataset_jsonl": deep_row}), 422, "nested too deeply"),
        "an oversized body": (post(server, "/api/calc", content=b"x" * 9_000_000, headers={"content-type": "application/json"}), 413, "limit"),
    }


PROBE_NAMES = [
    "explain form, (.*)*x", "explain api, (.*)*x", "calculator link, (.*){7}x", "lookahead that backtracks",
    "too many target names", "a 7 MB module name", "too many rank_pattern keys",
    "too many rank_pattern regexes", "a JSONL row nested 5,000 deep", "an oversized body",
]


@pytest.mark.parametrize("name", PROBE_NAMES)
def test_a_hostile_request_gets_a_clear_4xx_quickly_and_healthz_keeps_answering(server, name):
    probe, status, words = probes(server)[name]
    response, elapsed, latencies = while_healthz_is_polled(server, probe)
    assert response.status_code == status, response.text[:500]
    assert words in response.text
    assert elapsed < PROBE_BUDGET_SECONDS
    assert_healthz_answered(latencies, name)


def test_work_over_the_budget_stops_with_503_and_retry_after(server):
    # the most regex keys on the 70B model: valid, and near or over the 2 s budget this server runs with
    keys = {f"model\\.layers\\.{index}\\.(self_attn|mlp)\\..*_proj": 4 for index in range(limits.MAX_REGEX_PATTERN_KEYS)}
    body = {"model": "llama-3.1-70b", "lora": {"target_modules": "all-linear", "rank_pattern": keys}}
    response, elapsed, latencies = while_healthz_is_polled(server, post(server, "/api/calc", json_body=body))
    assert response.status_code in (200, 503)
    if response.status_code == 503:
        assert response.headers["Retry-After"] and "budget" in response.json()["detail"]
    assert elapsed < PROBE_BUDGET_SECONDS
    assert_healthz_answered(latencies, "the budget probe")


def test_a_client_still_sending_an_oversized_body_reads_the_413(server):
    host, port = server.url.removeprefix("http://").split(":")
    size = 9_000_000
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(f"POST /api/calc HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {size}\r\n\r\n".encode())
        sent = 0
        chunk = b"x" * 65536
        while sent < size:
            sock.sendall(chunk[: size - sent])  # a reset would raise here
            sent += len(chunk)
        answer = sock.recv(4096).decode(errors="replace")
    assert answer.startswith("HTTP/1.1 413"), answer[:200]


def test_a_valid_row_with_a_unicode_line_separator_is_accepted(server):
    row = json.dumps({"prompt": "first\u2028second", "response": "ok"}, ensure_ascii=False) + "\n"
    response = httpx.post(server.url + "/api/jobs", json={"model": "tiny-llama", "dataset_jsonl": row * 4})
    assert response.status_code == 201, response.text
    httpx.post(server.url + f"/api/jobs/{response.json()['id']}/cancel")
