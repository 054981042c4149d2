"""`anthropic-wif proxy`'s /metrics read by the real Prometheus parser (`prometheus_client`) while the
official Python SDK puts load on it, and its `--log-format json` lines. The values must move as the
traffic does: requests by status class, the upstream latency histogram, streams in flight, exchanges by
outcome when the token endpoint fails, and readiness.

Run: scripts create .venv-test with pytest + anthropic + prometheus_client; then
    CARGO_TARGET_DIR=… .venv-test/bin/pytest tests/e2e/test_proxy_metrics.py
"""
from __future__ import annotations

import json
import re
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from proxy_harness import Stack  # noqa: E402

anthropic = pytest.importorskip("anthropic")
parser = pytest.importorskip("prometheus_client.parser")

MODEL = "claude-test"
MESSAGES = [{"role": "user", "content": "hello"}]
P = "anthropic_wif_proxy_"


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} from the real parser; also checks the content type."""
    with urllib.request.urlopen(url + "/metrics") as r:
        assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
        text = r.read().decode()
    assert "sk-ant-" not in text and "eyJ" not in text, "no secret on /metrics"
    out = {}
    families = list(parser.text_string_to_metric_families(text))
    types = {f.name: f.type for f in families}
    assert types[P + "token_exchanges"] == "counter" and types[P + "requests"] == "counter"
    assert types[P + "upstream_response_seconds"] == "histogram"
    assert types[P + "requests_in_flight"] == "gauge" and types[P + "connections_open"] == "gauge"
    for f in families:
        for s in f.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def v(m: dict, name: str, **labels) -> float:
    return m.get((P + name, tuple(sorted(labels.items()))), float("nan"))


def test_metrics_move_with_the_traffic_and_json_logs_parse() -> None:
    stack = Stack("--stream-delay-ms", "200", proxy_args=("--log-format", "json"))
    try:
        deadline = time.time() + 20
        while time.time() < deadline:
            m = scrape(stack.url)
            if v(m, "ready") == 1:
                break
            time.sleep(0.1)
        assert v(m, "ready") == 1
        assert v(m, "token_exchanges_total", outcome="ok") == 1
        assert 500 < v(m, "token_expires_in_seconds") <= 600
        assert v(m, "requests_total", origin="upstream", **{"class": "2xx"}) == 0

        client = anthropic.Anthropic(base_url=stack.url, api_key="placeholder", max_retries=0)
        # Load: 4 threads x 25 requests, and 3 streams of 5 deltas 200 ms apart held open meanwhile.
        streams_open = threading.Barrier(4)

        def stream() -> None:
            with client.messages.stream(model=MODEL, max_tokens=16, messages=MESSAGES) as s:
                it = iter(s.text_stream)
                next(it)
                streams_open.wait(timeout=20)
                for _ in it:
                    pass

        def load() -> None:
            for _ in range(25):
                client.messages.create(model=MODEL, max_tokens=16, messages=MESSAGES)

        threads = [threading.Thread(target=stream) for _ in range(3)] + [threading.Thread(target=load) for _ in range(4)]
        for t in threads:
            t.start()
        streams_open.wait(timeout=20)
        during = scrape(stack.url)  # during the load: the three streams are in flight
        assert v(during, "requests_in_flight") >= 3
        assert v(during, "connections_open") >= 3
        for t in threads:
            t.join(timeout=60)
        after = scrape(stack.url)
        ok = v(after, "requests_total", origin="upstream", **{"class": "2xx"})
        assert ok == 103, ok
        assert v(after, "upstream_response_seconds_count") == 103
        assert v(after, "upstream_response_seconds_bucket", le="+Inf") == 103
        assert 0 < v(after, "upstream_response_seconds_sum") < 103 * 1.0
        buckets = sorted((float(dict(k[1])["le"]), val) for k, val in after.items()
                         if k[0] == P + "upstream_response_seconds_bucket")
        assert all(a[1] <= b[1] for a, b in zip(buckets, buckets[1:])), "cumulative buckets"
        assert v(after, "requests_in_flight") == 0
        assert v(after, "token_exchanges_total", outcome="ok") == 1, "no exchange per request"

        # A path the proxy refuses: its own 4xx, nothing upstream.
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(stack.url + "/nope")
        m = scrape(stack.url)
        assert v(m, "requests_total", origin="proxy", **{"class": "4xx"}) == 1
        assert v(m, "upstream_response_seconds_count") == 103

        # The token endpoint fails while upstream refuses the token: a failed exchange by outcome,
        # readiness 0, 503s from the proxy; then the endpoint recovers and the proxy with it.
        stack.rotate_jwt()  # a sendable identity token (a consumed one is never sent: cli/tests/consumed.rs)
        stack.control("/_emulator/faults", {"faults": [{"kind": "status", "status": 503, "count": 1000,
                                                        "endpoint": "token"}]})
        stack.control("/_emulator/revoke", {})
        with pytest.raises(anthropic.APIStatusError) as e:
            client.messages.create(model=MODEL, max_tokens=16, messages=MESSAGES)
        assert e.value.status_code == 503
        m = scrape(stack.url)
        assert v(m, "token_exchanges_total", outcome="unavailable") >= 1
        assert v(m, "token_consecutive_failures") >= 1
        assert v(m, "ready") == 0
        assert v(m, "requests_total", origin="proxy", **{"class": "5xx"}) == 1
        stack.control("/_emulator/reset", {})
        stack.rotate_jwt()
        deadline = time.time() + 20
        while time.time() < deadline and v(scrape(stack.url), "ready") != 1:
            time.sleep(0.2)
        m = scrape(stack.url)
        assert v(m, "ready") == 1 and v(m, "token_consecutive_failures") == 0
        assert v(m, "token_exchanges_total", outcome="ok") == 2
    finally:
        err = stack.close()

    lines = [json.loads(line) for line in err.splitlines() if line.strip()]
    assert lines, "the proxy logged nothing"
    for line in lines:
        assert set(line) >= {"ts", "type"} and line["ts"].endswith("Z"), line
    access = [x for x in lines if x["type"] == "access"]
    assert len(access) == 105, len(access)  # 103 forwarded, the refused path, the 503
    a = next(x for x in access if x["status"] == 200)
    assert {"method", "path", "status", "duration_ms", "bytes", "end", "origin"} <= set(a)
    assert a["method"] == "POST" and a["path"] == "/v1/messages" and a["end"] == "complete"
    assert a["origin"] == "upstream" and a["upstream_request_id"].startswith("req_")
    refused = next(x for x in access if x["status"] == 503)
    assert refused["origin"] == "proxy" and refused["request_id"].startswith("wifproxy_")
    events = [(x["type"], x.get("event")) for x in lines if x["type"] != "access"]
    assert ("proxy", "listening") in events and ("token", "ready") in events
    assert ("token", "refused-upstream") in events and ("token", "failed") in events
    assert ("answer", "no-token") in events and ("proxy", "draining") in events
    failed = next(x for x in lines if x.get("event") == "failed")
    assert failed["kind"] == "unavailable" and failed["retry_in"] >= 1 and failed["serving"] is False
    # A JWT is `eyJ…` with dots; random request ids in the log may contain "eyJ" but never a dot.
    assert "sk-ant-oat01-" not in err and not re.search(r"eyJ[\w-]+\.[\w-]+", err), "no secret in the log"
