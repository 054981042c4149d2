"""AsyncAnthropic with our AsyncProvider: concurrency, and the event loop
is never blocked by an exchange."""

from __future__ import annotations

import asyncio
import inspect
import time
from typing import List

import anthropic
from anthropic.lib.credentials import AccessToken as SdkAccessToken

import anthropic_wif
from conftest import MODEL, Emulator, async_provider

SLOW_MS = 1500


def test_async_call_is_a_coroutine_function() -> None:
    assert inspect.iscoroutinefunction(anthropic_wif.AsyncProvider.__call__)
    assert not inspect.iscoroutinefunction(anthropic_wif.Provider.__call__)


def test_async_provider_returns_sdk_token(emulator: Emulator) -> None:
    provider = async_provider(emulator)

    async def main() -> None:
        token = await provider()
        assert type(token) is SdkAccessToken
        again = await provider()
        assert again.token == token.token
        forced = await provider(force_refresh=True)
        assert forced.token != token.token

    asyncio.run(main())
    assert emulator.exchanges() == 2


def test_async_client_50_concurrent_requests_one_exchange_loop_not_blocked(emulator: Emulator) -> None:
    provider = async_provider(emulator)
    # The exchange is slow: the endpoint sits on the request before answering.
    emulator.faults({"kind": "delay", "ms": SLOW_MS})

    async def main() -> List[float]:
        ticks: List[float] = []
        stop = asyncio.Event()

        async def ticker() -> None:
            while not stop.is_set():
                ticks.append(time.monotonic())
                await asyncio.sleep(0.01)

        tick_task = asyncio.create_task(ticker())
        async with anthropic.AsyncAnthropic(credentials=provider, base_url=emulator.base_url, max_retries=0) as client:
            results = await asyncio.gather(
                *[
                    client.messages.create(
                        model=MODEL, max_tokens=16, messages=[{"role": "user", "content": f"q{i}"}]
                    )
                    for i in range(50)
                ]
            )
        stop.set()
        await tick_task
        assert all(r.type == "message" for r in results)
        return ticks

    started = time.monotonic()
    ticks = asyncio.run(main())
    elapsed = time.monotonic() - started
    stats = emulator.stats()
    assert stats["exchanges"] == 1
    assert stats["messages"] == 50
    # The exchange took at least SLOW_MS; a ticker every 10 ms kept running all
    # along. Generous bounds: a blocked loop would show one gap ≥ SLOW_MS and
    # a handful of ticks.
    assert elapsed >= SLOW_MS / 1000
    gaps = [b - a for a, b in zip(ticks, ticks[1:])]
    assert len(ticks) >= 20, f"only {len(ticks)} ticks in {elapsed:.2f}s"
    assert max(gaps) < (SLOW_MS / 1000) * 0.6, f"event loop stalled for {max(gaps):.3f}s"


def test_async_api_401_forces_refresh(emulator: Emulator) -> None:
    provider = async_provider(emulator)

    async def main() -> None:
        async with anthropic.AsyncAnthropic(credentials=provider, base_url=emulator.base_url, max_retries=2) as client:
            await client.messages.create(model=MODEL, max_tokens=8, messages=[{"role": "user", "content": "a"}])
            emulator.revoke()
            m = await client.messages.create(model=MODEL, max_tokens=8, messages=[{"role": "user", "content": "b"}])
            assert m.type == "message"

    asyncio.run(main())
    assert emulator.exchanges() == 2


def test_cancelled_waiter_does_not_break_the_provider(emulator: Emulator) -> None:
    provider = async_provider(emulator)
    emulator.faults({"kind": "delay", "ms": 800})

    async def main() -> None:
        task = asyncio.ensure_future(provider())
        await asyncio.sleep(0.1)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        # The exchange went on and its result is usable.
        token = await provider()
        assert token.token.startswith("sk-ant-oat01-")

    asyncio.run(main())
    assert emulator.exchanges() == 1


def test_errors_arrive_as_exceptions_in_async(emulator: Emulator) -> None:
    provider = anthropic_wif.AsyncProvider(
        federation_rule_id="fdrl_01TestRuleAbCdEfGhIjKlMn",
        organization_id="2f1c5e0a-8d4b-4a6e-9c3f-7b1d2e3f4a5b",
        base_url=emulator.base_url,
        identity_token=anthropic_wif.sources.File("/nonexistent/anthropic-wif-test/token"),
    )

    async def main() -> None:
        try:
            await provider()
        except anthropic_wif.IdentitySourceError as err:
            assert "/nonexistent/anthropic-wif-test/token" in str(err)
        else:
            raise AssertionError("expected IdentitySourceError")

    asyncio.run(main())
