"""The fault matrix (tests/fault-matrix.json) for the Python face: one case =
its own emulator process, its own sandbox (cache file, config dir, identity
token file), one call through the face, then every check the matrix gives.

Shared by test_faults.py (threads in the pytest process) and the debug-logging
run it starts in a child process (``python _faults.py NAME…`` prints the
results as JSON). Not a test file itself.

`via` picks the caller:
- ``provider``: ``anthropic_wif.Provider(...)()``
- ``async``: ``await anthropic_wif.AsyncProvider(...)()`` (on its own event loop)
- ``sdk``: one ``messages.create`` through ``anthropic.Anthropic(credentials=Provider(...))``
- ``async_sdk``: the same through ``anthropic.AsyncAnthropic(credentials=AsyncProvider(...))``
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import pickle
import re
import shutil
import socket
import sys
import tempfile
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import anthropic  # noqa: E402
import pytest  # noqa: E402

import anthropic_wif  # noqa: E402
from anthropic_wif import sources  # noqa: E402
from conftest import MODEL, ORG, REPO, RULE, SVAC, Emulator  # noqa: E402

MATRIX: Dict[str, Any] = json.loads((REPO / "tests" / "fault-matrix.json").read_text())

CLASS_OF = {
    "config": anthropic_wif.ConfigurationError,
    "identity": anthropic_wif.IdentitySourceError,
    "denied": anthropic_wif.ExchangeDeniedError,
    "unavailable": anthropic_wif.EndpointUnavailableError,
    "internal": anthropic_wif.WifError,
}

VIAS = ("provider", "async", "sdk", "async_sdk")

# Strings that must never reach an error or a log line.
CANARIES = ("sk-ant-", "SMUGGLEDSECRET", "ECHOEDTOKEN")
JWT_RE = re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


def leaks(text: str, secrets: Iterable[Optional[str]]) -> List[str]:
    """What of the secrets, the canaries or a JWT shape `text` holds (described, never quoted)."""
    found = []
    for s in secrets:
        if s and s in text:
            found.append(f"a secret ({s[:8]}…)")
    for c in CANARIES:
        if c in text:
            found.append(c)
    if JWT_RE.search(text):
        found.append("a JWT")
    return found


def closed_port_url() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}"


class SlowLoris:
    """Answers with headers promising a 100 000-byte body, then sends one byte
    every 400 ms and never finishes."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.stop = threading.Event()
        self.conns: List[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            seen = b""
            while b"\r\n\r\n" not in seen:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                seen += chunk
            conn.sendall(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n"
                b'request-id: req_slowloris\r\n\r\n{"access_token":"'
            )
            for _ in range(300):
                if self.stop.wait(0.4):
                    return
                conn.sendall(b"a")
        except OSError:
            return

    def close(self) -> None:
        self.stop.set()
        self.listener.close()
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass


@dataclasses.dataclass
class Result:
    name: str
    via: str
    secs: float = 0.0
    problems: List[str] = dataclasses.field(default_factory=list)
    # Kept for the leak checks; out of repr so a failing assertion never prints them.
    jwt: str = dataclasses.field(default="", repr=False)
    token: Optional[str] = dataclasses.field(default=None, repr=False)


def error_texts(err: BaseException) -> Dict[str, str]:
    """Every place an exception's text surfaces in Python, including a pickle round trip."""
    texts = {
        "str(e)": str(err),
        "repr(e)": repr(err),
        "traceback.format_exception": "".join(traceback.format_exception(type(err), err, err.__traceback__)),
        "vars(e)": repr(vars(err)),
        "e.args": repr(err.args),
    }
    data = pickle.dumps(err)
    texts["pickle.dumps(e)"] = data.decode("latin-1")
    back = pickle.loads(data)
    texts["str(unpickled)"] = str(back)
    texts["repr(unpickled)"] = repr(back)
    return texts


def _emulator_env() -> Dict[str, str]:
    # The emulator is the same binary: keep its (unread) stderr quiet.
    env = dict(os.environ)
    env.pop("ANTHROPIC_WIF_LOG", None)
    return env


def _call(via: str, kwargs: Dict[str, Any], base_url: str, problems: List[str]) -> Any:
    """One call through the face `via`; returns the AccessToken served (raises the face's error)."""
    if via == "provider":
        return anthropic_wif.Provider(**kwargs)()
    if via == "async":
        provider = anthropic_wif.AsyncProvider(**kwargs)

        async def run() -> Any:
            return await provider()

        return asyncio.run(run())
    if via == "sdk":
        inner = anthropic_wif.Provider(**kwargs)
        seen: List[Any] = []

        def credentials(*, force_refresh: bool = False) -> Any:
            t = inner(force_refresh=force_refresh)
            seen.append(t)
            return t

        with anthropic.Anthropic(base_url=base_url, credentials=credentials, max_retries=0) as client:
            reply = client.messages.create(model=MODEL, max_tokens=8, messages=[{"role": "user", "content": "hi"}])
        if reply.type != "message":
            problems.append(f"the SDK call answered {reply!r:.200}")
        return seen[-1] if seen else None
    if via == "async_sdk":
        ainner = anthropic_wif.AsyncProvider(**kwargs)
        aseen: List[Any] = []

        async def acredentials(*, force_refresh: bool = False) -> Any:
            t = await ainner(force_refresh=force_refresh)
            aseen.append(t)
            return t

        async def arun() -> Any:
            async with anthropic.AsyncAnthropic(base_url=base_url, credentials=acredentials, max_retries=0) as client:
                return await client.messages.create(
                    model=MODEL, max_tokens=8, messages=[{"role": "user", "content": "hi"}]
                )

        reply = asyncio.run(arun())
        if reply.type != "message":
            problems.append(f"the SDK call answered {reply!r:.200}")
        return aseen[-1] if aseen else None
    raise ValueError(f"unknown via {via}")


def run_case(case: Dict[str, Any], via: str = "provider") -> Result:
    """Run one matrix case through `via`; never raises (a crash is a problem)."""
    r = Result(name=case["name"], via=via)
    try:
        _run_case(case, via, r)
    except (Exception, pytest.fail.Exception):  # report, don't hide: the traceback is the problem
        r.problems.append("the case crashed:\n" + traceback.format_exc())
    return r


def _run_case(case: Dict[str, Any], via: str, r: Result) -> None:
    problems = r.problems
    sb = Path(tempfile.mkdtemp(prefix="wif-fault-"))
    emu = Emulator(env=_emulator_env())
    loris: Optional[SlowLoris] = None
    try:
        jwt = emu.jwt()
        r.jwt = jwt
        jwt_file = sb / "identity-token"
        jwt_file.write_text(jwt)
        jwt_file.chmod(0o600)
        (sb / "config").mkdir(mode=0o700)
        cache_dir = sb / "cache"
        base_url = emu.base_url
        setup = case.get("setup")
        if setup == "connection_refused":
            base_url = closed_port_url()
        elif setup == "slow_loris":
            loris = SlowLoris()
            base_url = loris.url
        elif setup:
            raise ValueError(f"unknown setup {setup}")
        if case.get("faults"):
            text = json.dumps(case["faults"]).replace("@JWT@", jwt).replace("@OVERSIZED@", "x" * (1024 * 1024 + 1))
            emu.faults(*json.loads(text))
        kwargs: Dict[str, Any] = dict(
            federation_rule_id=RULE,
            organization_id=ORG,
            service_account_id=SVAC,
            base_url=base_url,
            identity_token=sources.File(jwt_file),
            config_dir=sb / "config",
            credentials_path=cache_dir / "token.json",
        )

        result: Any = None
        err: Optional[BaseException] = None
        started = time.monotonic()
        try:
            result = _call(via, kwargs, emu.base_url, problems)
        except Exception as e:  # the outcome under test
            err = e
        r.secs = secs = time.monotonic() - started

        if case.get("max_seconds") is not None and secs > case["max_seconds"]:
            problems.append(f"took {secs:.1f} s > {case['max_seconds']} s")
        if case.get("min_seconds") is not None and secs < case["min_seconds"]:
            problems.append(f"took {secs:.1f} s < {case['min_seconds']} s")

        expect = case["expect"]
        if expect["outcome"] == "token":
            if err is not None:
                problems.append(f"expected a token, got {type(err).__name__} [{getattr(err, 'kind', '?')}]: {err}")
            elif not isinstance(result, anthropic.lib.credentials.AccessToken):
                problems.append(f"expected the SDK's AccessToken, got {type(result).__name__}")
            else:
                r.token = result.token
                now = int(time.time())
                want = expect.get("expires_in", 600)
                if not (isinstance(result.expires_at, int) and now + want - 10 <= result.expires_at <= now + want + 2):
                    problems.append(f"expires_at {result.expires_at} is not now + {want}")
                if not result.token.startswith("sk-ant-oat01-"):
                    problems.append("the token is not an sk-ant-oat01- token")
                if r.token in repr(result) or r.token in str(result):
                    problems.append("repr(AccessToken) shows the token")
        elif expect["outcome"] == "error":
            if err is None:
                problems.append(f"expected an error [{expect['kind']}], got {result!r}")
            else:
                cls = CLASS_OF[expect["kind"]]
                if not isinstance(err, anthropic_wif.WifError):
                    problems.append(f"not a WifError (the caller wrapped or replaced it): {type(err).__name__}: {err}")
                elif type(err) is not cls:
                    problems.append(f"expected {cls.__name__}, got {type(err).__name__}")
                else:
                    if err.kind != expect["kind"]:
                        problems.append(f"kind {err.kind}, expected {expect['kind']}: {err}")
                    status = expect.get("status")
                    if status is not None and err.status_code != status:
                        problems.append(f"status_code {err.status_code}, expected {status}")
                    if status is not None and f"HTTP {status}" not in str(err):
                        problems.append(f"the message does not give HTTP {status}: {err}")
                    for want_text in expect.get("contains", []):
                        if want_text.lower() not in str(err).lower():
                            problems.append(f"the message lacks {want_text!r}: {err}")
                    if err.status_code is not None and not isinstance(err.status_code, int):
                        problems.append(f"status_code is {type(err.status_code).__name__}")
                    if err.request_id is not None and not isinstance(err.request_id, str):
                        problems.append(f"request_id is {type(err.request_id).__name__}")
                    back = pickle.loads(pickle.dumps(err))
                    same = (type(back), back.kind, back.status_code, back.request_id, back.error_code, str(back))
                    if same != (type(err), err.kind, err.status_code, err.request_id, err.error_code, str(err)):
                        problems.append("the exception does not survive a pickle round trip intact")
        else:
            raise ValueError(f"bad outcome {expect['outcome']}")
        # No secret in any text of the error, whatever the outcome.
        if err is not None:
            for where, text in error_texts(err).items():
                found = leaks(text, [jwt])
                if found:
                    problems.append(f"{where} holds {', '.join(found)}")

        if not setup:
            stats = emu.stats()
            if case.get("token_requests") is not None and stats["token_requests"] != case["token_requests"]:
                problems.append(
                    f"the endpoint saw {stats['token_requests']} token requests, expected {case['token_requests']}"
                )
            if case.get("redirects_followed") is not None and stats.get("redirects_followed") != case["redirects_followed"]:
                problems.append(f"{stats.get('redirects_followed')} redirects were followed")
        # Nothing outside the cache holds a secret; a failed exchange leaves no cache file.
        for f in sorted(p for p in sb.rglob("*") if p.is_file()):
            if f == jwt_file:
                continue
            text = f.read_bytes().decode("latin-1")
            in_cache = cache_dir in f.parents
            if jwt in text or (not in_cache and "sk-ant-oat01-" in text):
                problems.append(f"{f.relative_to(sb)} holds a secret")
            if in_cache and err is not None and f.suffix == ".json":
                problems.append(f"a failed exchange left a cache file {f.relative_to(sb)}")
            if in_cache and r.token and f.suffix == ".json" and r.token not in text:
                problems.append(f"the cache file {f.relative_to(sb)} does not hold the token")
    finally:
        emu.stop()
        if loris is not None:
            loris.close()
        shutil.rmtree(sb, ignore_errors=True)


def cases_named(names: Iterable[str]) -> List[Dict[str, Any]]:
    wanted = set(names)
    return [c for c in MATRIX["cases"] if c["name"] in wanted]


def run_many(jobs: List[Tuple[Dict[str, Any], str]], concurrency: int) -> List[Result]:
    """Run (case, via) jobs on `concurrency` threads, slowest first so they overlap with the rest."""
    ordered = sorted(jobs, key=lambda j: -(j[0].get("max_seconds") or 0))
    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        return list(pool.map(lambda j: run_case(*j), ordered))


if __name__ == "__main__":
    # python _faults.py NAME… : run those cases through Provider() concurrently, print the results as JSON.
    selected = cases_named(sys.argv[1:])
    results = run_many([(c, "provider") for c in selected], concurrency=len(selected) or 1)
    sys.stdout.write(json.dumps([dataclasses.asdict(x) for x in results]))
