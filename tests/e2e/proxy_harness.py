"""The emulator and `anthropic-wif proxy` as real processes, for the SDK end-to-end tests."""
from __future__ import annotations

import json
import os
import subprocess
import tempfile
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RULE = "fdrl_01TestRule000000000000000"
ORG = "00000000-0000-4000-8000-000000000001"


def _binary(var: str, name: str, build: str) -> str:
    """$var, else the debug build `name` under $CARGO_TARGET_DIR (or ./target): scripts/lib.sh's rule."""
    target = Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target")
    exe = Path(os.environ.get(var) or target / "debug" / name)
    if not exe.exists():
        raise RuntimeError(f"{exe} is missing: run `cargo build -p {build}` (scripts/test.sh does) or set {var}")
    return str(exe)


def binary() -> str:
    """The `anthropic-wif` CLI under test ($ANTHROPIC_WIF_BIN)."""
    return _binary("ANTHROPIC_WIF_BIN", "anthropic-wif", "anthropic-wif-cli")


def emulator_binary() -> str:
    """The emulator, test tooling with its own binary ($ANTHROPIC_WIF_EMULATOR)."""
    return _binary("ANTHROPIC_WIF_EMULATOR", "wif-emulator", "anthropic-wif-emulator")


def _ready_line(proc: subprocess.Popen) -> dict:
    line = proc.stdout.readline()  # type: ignore[union-attr]
    if not line:
        raise RuntimeError(f"{proc.args[:2]} exited before it was ready: {proc.stderr.read() if proc.stderr else ''}")
    return json.loads(line)


class Stack:
    """An emulator, a fresh identity token, and a proxy in front of the emulator."""

    def __init__(self, *emulator_args: str, proxy_args: tuple[str, ...] = ()) -> None:
        self.dir = tempfile.TemporaryDirectory(prefix="wif-proxy-e2e-")
        d = Path(self.dir.name)
        self.env = {"PATH": os.environ.get("PATH", ""), "HOME": str(d), "XDG_CACHE_HOME": str(d / "cache"),
                    "ANTHROPIC_CONFIG_DIR": str(d / "config")}
        self.emu = subprocess.Popen([emulator_binary(), "--listen", "127.0.0.1:0", *emulator_args],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env)
        self.emu_url = _ready_line(self.emu)["base_url"]
        self.jwt_file = d / "identity-token"
        self.rotate_jwt()
        self.proxy = subprocess.Popen(
            [binary(), "proxy", "--listen", "127.0.0.1:0", "--base-url", self.emu_url,
             "--federation-rule-id", RULE, "--organization-id", ORG,
             "--identity-token-file", str(self.jwt_file), *proxy_args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env)
        self.url = _ready_line(self.proxy)["base_url"]

    def control(self, path: str, body: dict | None = None) -> dict:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.emu_url + path, data=data, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req) as r:
            return json.load(r)

    def rotate_jwt(self) -> None:
        tmp = self.jwt_file.with_suffix(".tmp")
        tmp.write_text(self.control("/_emulator/jwt", {})["jwt"])
        tmp.replace(self.jwt_file)

    def stats(self) -> dict:
        return self.control("/_emulator/stats")

    def close(self) -> str:
        """Stop both; return the proxy's stderr."""
        self.proxy.terminate()
        _, err = self.proxy.communicate(timeout=30)
        self.emu.terminate()
        self.emu.communicate(timeout=10)
        self.dir.cleanup()
        return err
