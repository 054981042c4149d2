"""The module inside real host programs (issue 10, items 10, 12, 13): programs
that write their own environment from other threads, that fork while an
exchange is in flight and then die, and that park hundreds of providers on one
cache file.

Each scenario that can crash or wedge a process runs in a child Python
process, so a SIGSEGV or a stuck lock is a failed assertion here, not a dead
test runner.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Dict, List

import pytest

import anthropic_wif
from anthropic_wif import sources
from conftest import ORG, RULE, SVAC, Emulator, provider_kwargs

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX only (fork, flock, signals)")


def _run_child(script: str, args: List[str], env: Dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _describe_exit(proc: subprocess.CompletedProcess[str]) -> str:
    how = f"killed by signal {-proc.returncode}" if proc.returncode < 0 else f"exit {proc.returncode}"
    return f"{how}; stdout: {proc.stdout[-2000:]!r}; stderr: {proc.stderr[-2000:]!r}"


# ---------------------------------------------------------------------------
# item 10: the host writes its environment while the engine works

RACE_SCRIPT = """
    import json, os, sys, threading, time
    import anthropic_wif

    seconds = float(sys.argv[1])
    jwts = json.loads(sys.argv[2])
    os.environ["ANTHROPIC_IDENTITY_TOKEN"] = jwts[0]
    stop = time.monotonic() + seconds
    counts = {"doctor": 0, "token": 0, "denied": 0, "not_sent": 0}
    problems = []

    def doctor_loop():
        while time.monotonic() < stop:
            report = anthropic_wif.doctor()  # resolves from os.environ: ANTHROPIC_*, HOME, XDG_*
            identity = report.get("identity") or {}
            if not identity.get("fetched"):
                problems.append("doctor: the identity variable read as unset: " + json.dumps(report)[:400])
            counts["doctor"] += 1

    def token_loop():
        # The `env` source reads ANTHROPIC_IDENTITY_TOKEN at every exchange.
        provider = anthropic_wif.Provider(no_cache=True)
        while time.monotonic() < stop:
            try:
                provider(force_refresh=True)
                counts["token"] += 1
            except anthropic_wif.ExchangeDeniedError:
                counts["denied"] += 1
            except anthropic_wif.IdentitySourceError as err:
                # A JWT this process already exchanged (or is exchanging on
                # the other thread) is never sent again.
                if err.error_code in ("identity_token_consumed", "identity_token_in_flight"):
                    counts["not_sent"] += 1
                else:
                    problems.append(f"token: {type(err).__name__}: {err}")
            except anthropic_wif.WifError as err:
                problems.append(f"token: {type(err).__name__}: {err}")

    threads = [threading.Thread(target=doctor_loop) for _ in range(2)]
    threads += [threading.Thread(target=token_loop) for _ in range(2)]
    for t in threads:
        t.start()
    i = 0
    while any(t.is_alive() for t in threads):
        # New variables make setenv grow (and move) the C environment array;
        # clearing them now and then keeps it from growing without bound.
        os.environ[f"ANTHROPIC_WIF_RACE_{i}"] = "v" * (i % 97)
        if i % 2000 == 1999:
            for name in [n for n in os.environ if n.startswith("ANTHROPIC_WIF_RACE_")]:
                del os.environ[name]
        if i % 50 == 0:
            os.environ["ANTHROPIC_IDENTITY_TOKEN"] = jwts[(i // 50) % len(jwts)]
        i += 1
    print(json.dumps({"counts": counts, "writes": i, "problems": problems[:5]}))
"""


def test_host_writing_its_environment_while_engine_threads_work(emulator: Emulator, tmp_path: Path) -> None:
    # Four threads in doctor() and token calls while the main thread sets and
    # unsets variables. The old engine called getenv on its own threads and
    # died with SIGSEGV here (getenv racing setenv's realloc of environ).
    env = dict(os.environ)
    env.update(
        ANTHROPIC_BASE_URL=emulator.base_url,
        ANTHROPIC_FEDERATION_RULE_ID=RULE,
        ANTHROPIC_ORGANIZATION_ID=ORG,
        ANTHROPIC_SERVICE_ACCOUNT_ID=SVAC,
        HOME=str(tmp_path),
        XDG_CACHE_HOME=str(tmp_path / "cache"),
    )
    jwts = [emulator.jwt() for _ in range(20)]
    proc = _run_child(RACE_SCRIPT, ["4", json.dumps(jwts)], env, timeout=120)
    assert proc.returncode == 0, _describe_exit(proc)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["problems"] == [], result
    counts = result["counts"]
    assert counts["doctor"] > 20 and counts["token"] >= 1 and result["writes"] > 1000, result
    assert counts["denied"] == 0, "no JWT was presented twice"


def test_a_token_call_reads_the_environment_as_it_is_now(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    # The snapshot is taken at each call that may exchange: a program that
    # puts a fresh identity token into its environment before each call gets
    # it used, and the variable it set is never seen as unset.
    monkeypatch.setenv("WIF_TEST_JWT", emulator.jwt())
    provider = anthropic_wif.Provider(**provider_kwargs(emulator, identity_token=sources.Env("WIF_TEST_JWT"), no_cache=True))
    first = provider().token
    for _ in range(3):
        monkeypatch.setenv("WIF_TEST_JWT", emulator.jwt())
        assert provider(force_refresh=True).token != first
    monkeypatch.delenv("WIF_TEST_JWT")
    with pytest.raises(anthropic_wif.IdentitySourceError, match="WIF_TEST_JWT is not set"):
        provider(force_refresh=True)
    assert emulator.exchanges() == 4


# ---------------------------------------------------------------------------
# item 12: fork during an exchange, then the parent dies


FORK_PARENT = """
    import json, os, sys, threading, time
    import anthropic_wif
    from anthropic_wif import sources

    kwargs = json.loads(sys.argv[1])
    kwargs["identity_token"] = sources.File(kwargs["identity_token"])
    provider = anthropic_wif.Provider(**kwargs)
    threading.Thread(target=provider, daemon=True).start()  # the emulator holds this exchange
    sys.stdin.readline()  # the test saw the lock taken and the exchange reach the emulator
    pid = os.fork()
    if pid == 0:
        time.sleep(300)  # a worker that lives on (killed by the test)
        os._exit(0)
    print(json.dumps({"child": pid}), flush=True)
    time.sleep(300)  # SIGKILLed by the test mid-exchange
"""


def _try_flock(path: Path) -> bool:
    """Whether the lock on `path` is free (taken and released at once); a
    missing file counts as free."""
    try:
        fd = os.open(str(path), os.O_RDWR)
    except FileNotFoundError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return True
    except OSError as err:
        if err.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
            return False
        raise
    finally:
        os.close(fd)


def test_a_forked_child_does_not_keep_the_cache_lock_of_a_dead_parent(emulator: Emulator, tmp_path: Path) -> None:
    # The parent holds the cache lock mid-exchange, forks a child that lives
    # on, and is SIGKILLed. The lock must go with the parent: the old engine's
    # flock sat on a file description the child shared, so the child kept it
    # and every other process timed out after 60 s.
    cache = tmp_path / "shared" / "token.json"
    jwt_file = tmp_path / "jwt"
    jwt_file.write_text(emulator.jwt())
    kwargs = dict(
        federation_rule_id=RULE,
        organization_id=ORG,
        service_account_id=SVAC,
        base_url=emulator.base_url,
        identity_token=str(jwt_file),
        credentials_path=str(cache),
    )
    emulator.faults({"kind": "delay", "ms": 60_000})
    parent = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(FORK_PARENT), json.dumps(kwargs)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    child = None
    lock = Path(str(cache) + ".lock")
    try:
        assert parent.stdin is not None and parent.stdout is not None
        deadline = time.monotonic() + 30
        # Mid-exchange: it holds the lock and its request is at the emulator.
        while _try_flock(lock) or emulator.stats()["faults_pending"]:
            assert parent.poll() is None, f"the parent died: {parent.stderr.read() if parent.stderr else ''}"
            assert time.monotonic() < deadline, "the parent never got to its exchange"
            time.sleep(0.02)
        parent.stdin.write("fork\n")
        parent.stdin.flush()
        line = parent.stdout.readline()
        assert line, f"the parent did not fork: {parent.stderr.read() if parent.stderr else ''}"
        child = int(json.loads(line)["child"])
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=30)
        os.kill(child, 0)  # the child lives on
        deadline = time.monotonic() + 10
        while not _try_flock(lock):
            assert time.monotonic() < deadline, "the forked child kept the dead parent's cache lock"
            time.sleep(0.05)
        # And a provider sharing the cache gets its token at once.
        jwt_file.write_text(emulator.jwt())
        started = time.monotonic()
        kw = dict(kwargs, identity_token=sources.File(str(jwt_file)))
        assert anthropic_wif.Provider(**kw)().token.startswith("sk-ant-oat01-")
        assert time.monotonic() - started < 10
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(timeout=30)
        for stream in (parent.stdin, parent.stdout, parent.stderr):
            if stream is not None:
                stream.close()
        if child is not None:
            try:
                os.kill(child, signal.SIGKILL)
            except ProcessLookupError:
                pass


# ---------------------------------------------------------------------------
# item 13: hundreds of providers waiting for one cache file


def test_many_lock_waiters_leave_an_unrelated_provider_fast(emulator: Emulator, tmp_path: Path) -> None:
    # 600 providers (each its own memory cache) wait for the one exchange of a
    # shared cache file. The old engine parked a blocking-pool thread per
    # waiter (the pool has 512): an unrelated provider with its own cache file
    # queued behind them for as long as the slow exchange took.
    jwt_file = tmp_path / "jwt"

    def kwargs(cache: str) -> Dict[str, Any]:
        return provider_kwargs(
            emulator, identity_token=sources.File(str(jwt_file)), credentials_path=str(tmp_path / cache)
        )

    async def unrelated(cache: str) -> float:
        jwt_file.write_text(emulator.jwt())
        started = time.perf_counter()
        token = await anthropic_wif.AsyncProvider(**kwargs(cache))()
        assert token.token.startswith("sk-ant-oat01-")
        return time.perf_counter() - started

    async def main() -> Dict[str, Any]:
        unloaded = min([await unrelated(f"alone-{i}.json") for i in range(3)])
        jwt_file.write_text(emulator.jwt())
        emulator.faults({"kind": "delay", "ms": 10_000})
        waiters = [anthropic_wif.AsyncProvider(**kwargs("shared.json")) for _ in range(600)]
        tasks = [asyncio.ensure_future(p()) for p in waiters]
        await asyncio.sleep(1.5)  # all of them are queued for the lock by now
        pending = sum(not t.done() for t in tasks)
        # The exchange of the shared file is still held by the emulator, so the
        # slow one is done with the JWT file: rewrite it for the unrelated provider.
        loaded = await unrelated("unrelated.json")
        tokens: List[Any] = await asyncio.gather(*tasks)
        return {"unloaded": unloaded, "loaded": loaded, "pending": pending, "tokens": {t.token for t in tokens}}

    r = asyncio.run(main())
    assert r["pending"] == 600, r["pending"]
    assert len(r["tokens"]) == 1, "every waiter got the one token"
    # Three unloaded calls, the shared exchange, the unrelated one.
    assert emulator.exchanges() == 5
    bound = max(20 * r["unloaded"], 2.0)
    assert r["loaded"] < bound, f"unrelated provider took {r['loaded']:.3f} s under load, {r['unloaded']:.3f} s alone"
