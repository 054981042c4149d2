"""The official Python SDK (`anthropic`) as a client of `anthropic-wif proxy`, configured with only a
base URL and a placeholder credential: the proxy strips it and injects a federated access token.

Run: scripts create .venv-test with pytest + anthropic; then
    CARGO_TARGET_DIR=… .venv-test/bin/pytest tests/e2e/test_proxy_sdk.py
(needs the debug binary: cargo build -p anthropic-wif-cli; or set ANTHROPIC_WIF_BIN).
"""
from __future__ import annotations

import asyncio
import re
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from proxy_harness import Stack  # noqa: E402

anthropic = pytest.importorskip("anthropic")

MODEL = "claude-test"
MESSAGES = [{"role": "user", "content": "hello"}]


@pytest.fixture
def stack():
    s = Stack("--stream-delay-ms", "100")
    yield s
    err = s.close()
    # A JWT is `eyJ…` with dots; random request ids in the log may contain "eyJ" but never a dot.
    assert "sk-ant-oat01-" not in err and not re.search(r"eyJ[\w-]+\.[\w-]+", err), "no secret in the proxy's log"


def test_api_key_placeholder(stack: Stack) -> None:
    client = anthropic.Anthropic(base_url=stack.url, api_key="placeholder")
    msg = client.messages.create(model=MODEL, max_tokens=16, messages=MESSAGES)
    assert msg.type == "message" and "emulator" in msg.content[0].text
    assert stack.stats()["exchanges"] == 1


def test_auth_token_placeholder(stack: Stack) -> None:
    client = anthropic.Anthropic(base_url=stack.url, auth_token="placeholder")
    for _ in range(3):
        msg = client.messages.create(model=MODEL, max_tokens=16, messages=MESSAGES)
        assert msg.role == "assistant"
    assert stack.stats()["exchanges"] == 1
    assert stack.stats()["messages_unauthorized"] == 0


def test_stream_arrives_event_by_event(stack: Stack) -> None:
    client = anthropic.Anthropic(base_url=stack.url, api_key="placeholder")
    arrivals = []
    with client.messages.stream(model=MODEL, max_tokens=16, messages=MESSAGES) as stream:
        for text in stream.text_stream:
            arrivals.append((time.monotonic(), text))
        final = stream.get_final_message()
    assert len(arrivals) == 5
    assert "".join(t for _, t in arrivals) == final.content[0].text
    # Deltas are paced 100 ms apart upstream; a buffering proxy would deliver them at once.
    assert arrivals[-1][0] - arrivals[0][0] >= 0.2


def test_concurrent_async_clients_share_one_exchange(stack: Stack) -> None:
    async def main() -> list[str]:
        client = anthropic.AsyncAnthropic(base_url=stack.url, api_key="placeholder")
        rs = await asyncio.gather(*[client.messages.create(model=MODEL, max_tokens=16, messages=MESSAGES)
                                    for _ in range(50)])
        return [r.id for r in rs]

    ids = asyncio.run(main())
    assert len(set(ids)) == 50
    assert stack.stats()["exchanges"] == 1


def test_revoked_token_is_replaced_transparently(stack: Stack) -> None:
    client = anthropic.Anthropic(base_url=stack.url, api_key="placeholder", max_retries=0)
    client.messages.create(model=MODEL, max_tokens=16, messages=MESSAGES)
    stack.rotate_jwt()
    stack.control("/_emulator/revoke", {})
    msg = client.messages.create(model=MODEL, max_tokens=16, messages=MESSAGES)
    assert msg.type == "message"
    s = stack.stats()
    assert s["exchanges"] == 2 and s["messages_unauthorized"] == 1


def test_endpoint_down_is_a_503_with_the_reason(stack: Stack) -> None:
    client = anthropic.Anthropic(base_url=stack.url, api_key="placeholder", max_retries=0)
    # A token in use first: the proxy obtains its first one in the background after it starts listening,
    # and that exchange must not land between the revocation and the faults below.
    client.messages.create(model=MODEL, max_tokens=16, messages=MESSAGES)
    stack.rotate_jwt()  # a sendable identity token (a consumed one is never sent: cli/tests/consumed.rs)
    stack.control("/_emulator/revoke", {})  # the token in use dies…
    stack.control("/_emulator/faults", {"faults": [{"kind": "status", "status": 503, "count": 1000}]})  # …and no new one
    with pytest.raises(anthropic.APIStatusError) as e:
        client.messages.create(model=MODEL, max_tokens=16, messages=MESSAGES)
    assert e.value.status_code == 503
    assert "no access token available" in str(e.value) and "503" in str(e.value)
