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


def release_emulator() -> Path:
    return target_dir() / "release" / "wif-emulator"


class Emulator:
    """`wif-emulator` as a child process on a free loopback port."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [str(release_emulator()), "--listen", "127.0.0.1:0", *args],
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


def spawn_rss() -> Path:
    """The small C launcher that measures a child's own wall time and peak RSS (built on first use)."""
    exe = target_dir() / "bench" / "spawn_rss"
    src = Path(__file__).resolve().parent / "spawn_rss.c"
    if not exe.exists() or exe.stat().st_mtime < src.stat().st_mtime:
        exe.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([os.environ.get("CC", "cc"), "-O2", "-o", str(exe), str(src)], check=True)
    return exe


def run_measured(argv: list[str], env: dict[str, str]) -> tuple[float, int]:
    """Run a child to completion; return (wall seconds, peak RSS in KiB) as the
    launcher measured them around fork/exec/wait. Fails loudly."""
    proc = subprocess.run([str(spawn_rss()), *argv], env=env, stdin=subprocess.DEVNULL, capture_output=True)
    err = proc.stderr.decode(errors="replace")
    if proc.returncode != 0:
        raise SystemExit(f"benchmark child failed ({proc.returncode}): {argv[:3]}\n{err}")
    if not proc.stdout.strip():
        raise SystemExit(f"benchmark child printed nothing: {argv[:3]}")
    last = err.strip().splitlines()[-1]
    fields = dict(kv.split("=") for kv in last.split()[1:])
    return int(fields["wall_ns"]) / 1e9, int(fields["maxrss_kib"])


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def fmt_ms(s: float) -> str:
    return f"{s * 1000:8.2f} ms"


def fmt_us(s: float) -> str:
    return f"{s * 1e6:8.2f} µs"
