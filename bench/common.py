"""Shared helpers for the benchmarks: the release binary, the emulator, child rusage."""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def target_dir() -> Path:
    return Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target")


def release_bin() -> Path:
    return target_dir() / "release" / "anthropic-wif"


class Emulator:
    """`anthropic-wif emulator` as a child process on a free loopback port."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [str(release_bin()), "emulator", "--listen", "127.0.0.1:0", *args],
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        self.base_url = json.loads(line)["base_url"]

    def post(self, path: str, body: dict | None = None) -> dict:
        req = urllib.request.Request(
            self.base_url + path, data=json.dumps(body or {}).encode(), headers={"Content-Type": "application/json"}
        )
        return json.load(urllib.request.urlopen(req))

    def jwt(self) -> str:
        return self.post("/_emulator/jwt")["jwt"]

    def stats(self) -> dict:
        return json.load(urllib.request.urlopen(self.base_url + "/_emulator/stats"))

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def run_measured(argv: list[str], env: dict[str, str]) -> tuple[float, int]:
    """Run a child to completion; return (wall seconds, peak RSS in KiB). Fails loudly."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, rusage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    out = proc.stdout.read()  # type: ignore[union-attr]
    err = proc.stderr.read()  # type: ignore[union-attr]
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"benchmark child failed ({proc.returncode}): {argv[:3]}\n{err.decode(errors='replace')}")
    if not out.strip():
        raise SystemExit(f"benchmark child printed nothing: {argv[:3]}")
    return wall, rusage.ru_maxrss


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def fmt_ms(s: float) -> str:
    return f"{s * 1000:8.2f} ms"


def fmt_us(s: float) -> str:
    return f"{s * 1e6:8.2f} µs"
