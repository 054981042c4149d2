"""Threads, asyncio herds, fork and multiprocessing: one exchange each time."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import threading
from pathlib import Path
from typing import List, Optional

import pytest

import anthropic_wif
from anthropic_wif import _native
from conftest import Emulator, async_provider, mint_source, provider_kwargs, sync_provider

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork"),
    # Forking a multi-threaded process is exactly what these tests check.
    pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning"),
]


def test_32_threads_at_once_make_one_exchange(emulator: Emulator, tmp_path: Path) -> None:
    counter = tmp_path / "fetches"
    provider = sync_provider(emulator, identity_token=mint_source(emulator, counter))
    emulator.faults({"kind": "delay", "ms": 500})
    barrier = threading.Barrier(32)
    tokens: List[Optional[str]] = [None] * 32
    errors: List[BaseException] = []

    def worker(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            tokens[i] = provider().token
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert len(set(tokens)) == 1 and tokens[0] is not None
    assert emulator.exchanges() == 1
    assert counter.read_text().count("fetch") == 1


def test_50_concurrent_awaits_make_one_exchange(emulator: Emulator) -> None:
    provider = async_provider(emulator)
    emulator.faults({"kind": "delay", "ms": 300})

    async def main() -> List[str]:
        results = await asyncio.gather(*[provider() for _ in range(50)])
        return [r.token for r in results]

    tokens = asyncio.run(main())
    assert len(set(tokens)) == 1
    assert emulator.exchanges() == 1


def test_threads_share_the_gil_free_exchange(emulator: Emulator) -> None:
    # While one thread waits on a slow exchange, another runs Python code:
    # the GIL is released for the I/O.
    provider = sync_provider(emulator)
    emulator.faults({"kind": "delay", "ms": 1000})
    done = threading.Event()
    count = 0

    def spin() -> None:
        nonlocal count
        while not done.is_set():
            count += 1

    spinner = threading.Thread(target=spin)
    spinner.start()
    try:
        provider()
    finally:
        done.set()
        spinner.join()
    # A held GIL would let the spinner run only at the switch interval at
    # best; released, it counts freely. Generous bound.
    assert count > 10_000


def _child_report(fd: int, payload: dict) -> None:
    os.write(fd, json.dumps(payload).encode())
    os.close(fd)


def test_use_after_fork(emulator: Emulator) -> None:
    provider = sync_provider(emulator)
    parent_token = provider().token
    generation = _native._fork_generation()
    assert emulator.exchanges() == 1

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        code = 0
        try:
            os.close(r)
            # Same token, no new exchange: the disk cache has it.
            same = provider().token
            # The runtime works in the child: a real exchange.
            fresh = provider(force_refresh=True).token
            _child_report(
                w,
                {
                    "same": same == parent_token,
                    "fresh_differs": fresh != parent_token,
                    "generation": _native._fork_generation(),
                },
            )
        except BaseException as err:  # noqa: BLE001
            _child_report(w, {"error": f"{type(err).__name__}: {err}"})
            code = 1
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r) as f:
        report = json.loads(f.read() or "{}")
    _, status = os.waitpid(pid, 0)
    assert "error" not in report, report
    assert os.WEXITSTATUS(status) == 0
    assert report["same"] is True
    assert report["fresh_differs"] is True
    assert report["generation"] == generation + 1
    assert emulator.exchanges() == 2
    # The parent still works after the fork.
    assert provider().token.startswith("sk-ant-oat01-")
    assert provider(force_refresh=True).token.startswith("sk-ant-oat01-")
    assert emulator.exchanges() == 3


def test_fork_during_a_slow_exchange(emulator: Emulator) -> None:
    # A thread of the parent is mid-exchange when the process forks: the child
    # must not inherit a lock or a runtime it cannot use.
    provider = sync_provider(emulator)
    emulator.faults({"kind": "delay", "ms": 1000})
    t = threading.Thread(target=provider)
    t.start()
    import time

    time.sleep(0.3)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.close(r)
            tok = provider().token
            _child_report(w, {"ok": tok.startswith("sk-ant-oat01-")})
        except BaseException as err:  # noqa: BLE001
            _child_report(w, {"error": f"{type(err).__name__}: {err}"})
            code = 1
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r) as f:
        report = json.loads(f.read() or "{}")
    os.waitpid(pid, 0)
    t.join(timeout=60)
    assert report == {"ok": True}


def _mp_worker(kwargs: dict, queue: "multiprocessing.Queue[str]") -> None:
    try:
        p = anthropic_wif.Provider(**kwargs)
        queue.put(p().token[-4:])
    except BaseException as err:  # noqa: BLE001
        queue.put(f"error: {type(err).__name__}: {err}")


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_multiprocessing_herd_shares_one_exchange(emulator: Emulator, method: str) -> None:
    # Warm the parent (fork start method inherits the engine's state).
    kwargs = provider_kwargs(emulator)
    kwargs["identity_token"] = kwargs["identity_token"].to_dict()
    anthropic_wif.Provider(**kwargs)()
    ctx = multiprocessing.get_context(method)
    queue = ctx.Queue()
    procs = [ctx.Process(target=_mp_worker, args=(kwargs, queue)) for _ in range(4)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert all(not r.startswith("error") for r in results), results
    assert len(set(results)) == 1
    # Every process found the token in the shared on-disk cache.
    assert emulator.exchanges() == 1


def test_ctrl_c_interrupts_a_slow_exchange(emulator: Emulator) -> None:
    import signal
    import time

    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals are delivered to the main thread")
    provider = sync_provider(emulator)
    emulator.faults({"kind": "delay", "ms": 3000})
    timer = threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT))
    started = time.monotonic()
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            provider()
    finally:
        timer.cancel()
    # Interrupted long before the endpoint answered (generous bound).
    assert time.monotonic() - started < 2.5
    # The exchange went on in the background; its token serves the next call.
    assert provider().token.startswith("sk-ant-oat01-")
    assert emulator.exchanges() == 1
