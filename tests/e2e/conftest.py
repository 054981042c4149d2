"""Fixtures for the cross-language end-to-end tests: the real CLI binary and
the real emulator process on loopback, with a sandboxed config dir."""
from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from pathlib import Path

import pytest
from proxy_harness import binary, emulator_binary

ROOT = Path(__file__).resolve().parents[2]
RULE = "fdrl_01E2eRule0000000000000000"
ORG = "00000000-0000-4000-8000-000000000001"
SVAC = "svac_01E2eServiceAccount00000000"


def cli_bin() -> Path:
    try:
        return Path(binary())
    except RuntimeError as e:
        pytest.fail(str(e))


class EmulatorProc:
    def __init__(self) -> None:
        try:
            exe = emulator_binary()
        except RuntimeError as e:
            pytest.fail(str(e))
        self.proc = subprocess.Popen([exe, "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE, text=True)
        self.base_url = json.loads(self.proc.stdout.readline())["base_url"]  # type: ignore[union-attr]

    def _post(self, path: str, body: dict | None = None) -> dict:
        req = urllib.request.Request(
            self.base_url + path, data=json.dumps(body or {}).encode(), headers={"Content-Type": "application/json"}
        )
        return json.load(urllib.request.urlopen(req))

    def jwt(self) -> str:
        return self._post("/_emulator/jwt")["jwt"]

    def stats(self) -> dict:
        return json.load(urllib.request.urlopen(self.base_url + "/_emulator/stats"))

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture()
def emulator():
    emu = EmulatorProc()
    yield emu
    emu.stop()


@pytest.fixture()
def sandbox(tmp_path, monkeypatch, emulator):
    """A config dir with a profile writer; the process env points at it."""
    for var in list(os.environ):
        if var.startswith("ANTHROPIC_"):
            monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("ANTHROPIC_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()

    class Sandbox:
        root = tmp_path
        config_dir = tmp_path / "config"
        emu = emulator

        def profile(self, name: str, **extra) -> Path:
            ident = tmp_path / f"identity-{name}"
            ident.write_text(emulator.jwt() + "\n")
            cfg = {
                "version": "1.0",
                "organization_id": ORG,
                "base_url": emulator.base_url,
                "authentication": {
                    "type": "oidc_federation",
                    "federation_rule_id": RULE,
                    "service_account_id": SVAC,
                    "identity_token": {"source": "file", "path": str(ident)},
                },
                **extra,
            }
            path = self.config_dir / "configs" / f"{name}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(cfg))
            path.chmod(0o600)
            return ident

        def credentials(self, name: str) -> dict:
            return json.loads((self.config_dir / "credentials" / f"{name}.json").read_text())

        def cli(self, *args: str) -> subprocess.CompletedProcess:
            return subprocess.run(
                [str(cli_bin()), *args], capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60
            )

    return Sandbox()
