"""Refresh under faults, with the official SDK as the caller
(docs/hardening-matrix.md §2): a cached token inside the advisory window keeps
serving while the token endpoint is down, and the endpoint is not hammered;
inside the mandatory window the failure surfaces."""

from __future__ import annotations

import asyncio
import json
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator, List, NamedTuple

import anthropic
import pytest

import anthropic_wif
from anthropic_wif import EndpointUnavailableError
from conftest import MODEL, Emulator, provider_kwargs

TOKEN_LIFETIME = 100


@pytest.fixture(scope="module")
def emu100() -> Iterator[Emulator]:
    """An emulator minting 100 s tokens (so a real token can sit in either window)."""
    emu = Emulator("--token-lifetime", str(TOKEN_LIFETIME))
    yield emu
    emu.stop()


@pytest.fixture
def emu(emu100: Emulator) -> Emulator:
    emu100.reset()
    return emu100


class Cached(NamedTuple):
    token: str
    expires_at: int
    file: Path


def cached_token(emu: Emulator, tmp_path: Path, name: str, left: int) -> Cached:
    """A token the emulator minted (valid there ~100 s), cached SDK-style with `left` seconds left."""
    minted = anthropic_wif.Provider(**provider_kwargs(emu, no_cache=True))()
    d = tmp_path / name
    d.mkdir(mode=0o700)
    f = d / "token.json"
    expires_at = int(time.time()) + left
    # The official SDKs' cache format (no lifetime fields: the default windows, 120 s / 30 s, apply).
    f.write_text(
        json.dumps({"version": "1.0", "type": "oauth_token", "access_token": minted.token, "expires_at": expires_at})
    )
    f.chmod(0o600)
    return Cached(minted.token, expires_at, f)


def ask(client: anthropic.Anthropic) -> Any:
    return client.messages.create(model=MODEL, max_tokens=8, messages=[{"role": "user", "content": "hi"}])


def test_advisory_window_endpoint_down_sdk_calls_keep_succeeding_with_bounded_hits(emu: Emulator, tmp_path: Path) -> None:
    cached = cached_token(emu, tmp_path, "advisory", 100)  # inside the 120 s advisory window, outside the 30 s one
    emu.faults({"kind": "status", "status": 503, "count": 1000})
    before = emu.stats()

    provider = anthropic_wif.Provider(**provider_kwargs(emu, credentials_path=cached.file))
    served: List[Any] = []

    def credentials(*, force_refresh: bool = False) -> Any:
        t = provider(force_refresh=force_refresh)
        served.append(t)
        return t

    with anthropic.Anthropic(base_url=emu.base_url, credentials=credentials, max_retries=0) as client:
        started = time.monotonic()
        # In a row, then a burst from threads, then again after the 5 s back-off has run out.
        for _ in range(10):
            assert ask(client).type == "message"
        with ThreadPoolExecutor(max_workers=10) as pool:
            burst = list(pool.map(lambda _: ask(client), range(30)))
        assert all(r.type == "message" for r in burst)
        assert time.monotonic() - started < 15, "one quick refresh attempt, not the whole retry budget"
        time.sleep(5.5)
        for _ in range(5):
            assert ask(client).type == "message"
    # Another provider in this process sharing the cache file backs off too (the back-off is in its lock file).
    other = anthropic_wif.Provider(**provider_kwargs(emu, credentials_path=cached.file))()
    assert other.token == cached.token

    after = emu.stats()
    assert after["messages"] - before["messages"] == 45, "every API call went through"
    assert served, "the SDK asked the provider"
    for t in served:
        assert t.token == cached.token, "the still-valid cached token was served"
        assert t.expires_at == cached.expires_at
    hits = after["token_requests"] - before["token_requests"]
    assert hits >= 1, "a refresh was attempted"
    assert hits <= 2, f"the token endpoint was hit {hits} times for 46 calls"
    assert after["exchanges"] == before["exchanges"], "no exchange succeeded while down"


def test_advisory_window_endpoint_down_async_sdk(emu: Emulator, tmp_path: Path) -> None:
    cached = cached_token(emu, tmp_path, "advisory-async", 100)
    emu.faults({"kind": "status", "status": 503, "count": 1000})
    before = emu.stats()
    provider = anthropic_wif.AsyncProvider(**provider_kwargs(emu, credentials_path=cached.file))

    async def main() -> List[Any]:
        async with anthropic.AsyncAnthropic(base_url=emu.base_url, credentials=provider, max_retries=0) as client:
            replies = [
                await client.messages.create(model=MODEL, max_tokens=8, messages=[{"role": "user", "content": "hi"}])
                for _ in range(5)
            ]
            replies += await asyncio.gather(
                *(
                    client.messages.create(model=MODEL, max_tokens=8, messages=[{"role": "user", "content": "hi"}])
                    for _ in range(20)
                )
            )
            return replies

    started = time.monotonic()
    replies = asyncio.run(main())
    assert time.monotonic() - started < 15
    assert all(r.type == "message" for r in replies)
    assert provider.cached() is not None and provider.cached().token == cached.token  # type: ignore[union-attr]
    after = emu.stats()
    assert after["messages"] - before["messages"] == 25
    hits = after["token_requests"] - before["token_requests"]
    assert 1 <= hits <= 2, f"the token endpoint was hit {hits} times for 25 calls"
    assert after["exchanges"] == before["exchanges"]


def test_mandatory_window_endpoint_down_the_sdk_call_fails(emu: Emulator, tmp_path: Path) -> None:
    cached = cached_token(emu, tmp_path, "mandatory", 20)  # inside the 30 s mandatory window
    emu.faults({"kind": "status", "status": 503, "count": 1000})
    before = emu.stats()
    provider = anthropic_wif.Provider(**provider_kwargs(emu, credentials_path=cached.file))
    with anthropic.Anthropic(base_url=emu.base_url, credentials=provider, max_retries=0) as client:
        with pytest.raises(EndpointUnavailableError) as info:
            ask(client)
    err = info.value
    assert err.status_code == 503
    assert err.kind == "unavailable"
    after = emu.stats()
    assert after["messages"] == before["messages"], "the stale token was not used"
    assert 1 <= after["token_requests"] - before["token_requests"] <= 3, "one exchange, with its retries"
    for text in (str(err), repr(err), "".join(traceback.format_exception(type(err), err, err.__traceback__))):
        assert cached.token not in text
        assert "sk-ant-" not in text and "eyJ" not in text
