"""The cross-face fault matrix (tests/fault-matrix.json, docs/hardening-matrix.md)
through the Python face: every case through ``Provider()(…)``, each with its own
emulator process and sandbox, run on threads (slow time-out cases first) so the
whole matrix takes about as long as its slowest case. A few rows also through
``AsyncProvider`` and with the official SDK clients as the caller, and the
leak-prone rows again in a child process with ``ANTHROPIC_WIF_LOG=debug`` to
check the engine's log lines too.

Env: FAULT_CASE=<name> runs one case; FAULT_CONCURRENCY (default 8).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

import pytest

from _faults import HERE, MATRIX, Result, leaks, run_many
from conftest import cli_binary, emulator_binary

ONLY = os.environ.get("FAULT_CASE")
CONCURRENCY = int(os.environ.get("FAULT_CONCURRENCY", "8"))

CASES = [c for c in MATRIX["cases"] if not ONLY or c["name"] == ONLY]

# Rows also run with the other callers: AsyncProvider directly, and the official
# SDK clients, which must surface our exception unchanged (no wrapping, no retry).
OTHER_CALLERS: Dict[str, Tuple[str, ...]] = {
    "503_burst_then_success": ("async", "sdk", "async_sdk"),
    "429_without_retry_after": ("async", "sdk"),
    "echo_401": ("async", "sdk", "async_sdk"),
    "accepts_and_never_answers": ("sdk", "async_sdk"),
    "redirect_to_another_host": ("async",),
    "error_text_echoing_the_request": ("async", "async_sdk"),
    "request_id_header_with_a_token_in_it": ("sdk",),
}

# Rows whose bodies, headers or request echo a secret: again with the engine logging at debug.
LOG_ROWS = [
    "503_burst_then_success",
    "echo_400_oauth_shape",
    "echo_400_anthropic_shape",
    "echo_401",
    "echo_503_every_time",
    "error_text_echoing_the_request",
    "request_id_header_with_a_token_in_it",
    "json_string",
    "token_type_mac",
    "access_token_with_a_space",
    "redirect_to_another_host",
    "non_json_502_then_success",
]

JOBS: List[Tuple[str, str]] = [(c["name"], "provider") for c in CASES] + [
    (c["name"], via) for c in CASES for via in OTHER_CALLERS.get(c["name"], ())
]


def test_the_matrix_covers_every_case_and_names_only_known_kinds() -> None:
    cases = MATRIX["cases"]
    assert len(cases) >= 50, len(cases)
    names = {c["name"] for c in cases}
    assert len(names) == len(cases), "case names are unique"
    for c in cases:
        assert c["expect"]["outcome"] in ("token", "error"), c["name"]
        if c["expect"]["outcome"] == "error":
            assert c["expect"]["kind"] in MATRIX["kinds"], c["name"]
        assert c.get("faults") or c.get("setup"), c["name"]
    for n in list(OTHER_CALLERS) + LOG_ROWS:
        assert n in names, f"{n} is a matrix case"


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dict[Tuple[str, str], Result]]:
    """All jobs at once, on threads (module scope: before the per-test isolation
    fixture, so isolate here too)."""
    home = tmp_path_factory.mktemp("fault-home")
    with pytest.MonkeyPatch.context() as mp:
        for name in list(os.environ):
            if name.startswith("ANTHROPIC_") and name not in ("ANTHROPIC_WIF_BIN", "ANTHROPIC_WIF_EMULATOR"):
                mp.delenv(name, raising=False)
        mp.setenv("HOME", str(home))
        mp.setenv("XDG_CACHE_HOME", str(home / ".cache"))
        mp.setenv("XDG_CONFIG_HOME", str(home / ".config"))
        by_name = {c["name"]: c for c in CASES}
        done = run_many([(by_name[n], via) for n, via in JOBS], CONCURRENCY)
        yield {(r.name, r.via): r for r in done}


def report(r: Result) -> None:
    assert not r.problems, f"{r.name} via {r.via} ({r.secs:.1f} s):\n  - " + "\n  - ".join(r.problems)


@pytest.mark.parametrize("name,via", JOBS, ids=[f"{n}-{v}" for n, v in JOBS])
def test_fault_case(results: Dict[Tuple[str, str], Result], name: str, via: str) -> None:
    report(results[(name, via)])


@pytest.mark.skipif(bool(ONLY), reason="FAULT_CASE runs one case")
def test_leak_prone_rows_with_debug_logging_leave_no_secret_on_stderr(tmp_path: Path) -> None:
    env = dict(
        os.environ,
        ANTHROPIC_WIF_LOG="debug",
        ANTHROPIC_WIF_BIN=cli_binary(),
        ANTHROPIC_WIF_EMULATOR=emulator_binary(),
        PYTHONPATH=str(HERE),
    )
    out = subprocess.run(
        [sys.executable, str(HERE / "_faults.py"), *LOG_ROWS],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
    )
    assert out.returncode == 0, f"the child failed: {out.stderr[-3000:]}"
    results = [Result(**r) for r in json.loads(out.stdout)]
    assert sorted(r.name for r in results) == sorted(LOG_ROWS)
    for r in results:
        report(r)
    # The log was on (so this checks something), and holds no JWT, token or canary.
    lines = [line for line in out.stderr.splitlines() if line.startswith("anthropic-wif:")]
    assert len(lines) >= len(LOG_ROWS), f"debug log lines: {len(lines)}"
    secrets = [s for r in results for s in (r.jwt, r.token) if s]
    found = leaks(out.stderr, secrets)
    assert found == [], f"secrets in the debug log: {', '.join(found)}"
