"""Fixtures: a real emulator process over loopback, an isolated environment
(HOME, config and cache dirs in a temp dir, no ANTHROPIC_* variables), and
helpers to build providers that take fresh JWTs from the emulator."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest

import anthropic_wif
from anthropic_wif import sources

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
MINT = str(HERE / "mint_jwt.py")

RULE = "fdrl_01TestRuleAbCdEfGhIjKlMn"
ORG = "2f1c5e0a-8d4b-4a6e-9c3f-7b1d2e3f4a5b"
SVAC = "svac_01TestServiceAcctAbCdEf"
# Any model name: the emulator answers them all.
MODEL = "claude-wif-emulator"


# Read once: the isolation fixture below clears ANTHROPIC_* variables.
_CLI_BIN = os.environ.get("ANTHROPIC_WIF_BIN")
_EMULATOR_BIN = os.environ.get("ANTHROPIC_WIF_EMULATOR")


def _binary(explicit: Optional[str], name: str, build: str, var: str) -> str:
    """`explicit` ($var), else the debug build `name` under $CARGO_TARGET_DIR (scripts/lib.sh's rule)."""
    if explicit:
        return explicit
    target = os.environ.get("CARGO_TARGET_DIR") or str(REPO / "target")
    candidate = Path(target) / "debug" / name
    if candidate.exists():
        return str(candidate)
    pytest.fail(f"{name} binary not found: run `cargo build -p {build}` or set {var}", pytrace=False)


def cli_binary() -> str:
    """The `anthropic-wif` CLI under test."""
    return _binary(_CLI_BIN, "anthropic-wif", "anthropic-wif-cli", "ANTHROPIC_WIF_BIN")


def emulator_binary() -> str:
    """The emulator (test tooling, its own binary)."""
    return _binary(_EMULATOR_BIN, "wif-emulator", "anthropic-wif-emulator", "ANTHROPIC_WIF_EMULATOR")


class Emulator:
    """A running `wif-emulator` process and its control API."""

    def __init__(self, *extra_args: str, env: Optional[Dict[str, str]] = None) -> None:
        self.proc = subprocess.Popen(
            [emulator_binary(), "--listen", "127.0.0.1:0", *extra_args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            err = self.proc.stderr.read() if self.proc.stderr else ""
            self.proc.wait(timeout=10)
            pytest.fail(f"emulator did not start (exit {self.proc.returncode}): {err}", pytrace=False)
        self.base_url: str = json.loads(line)["base_url"]

    def _call(self, method: str, path: str, body: Optional[Dict[str, Any]] = None) -> Any:
        data = json.dumps(body).encode() if body is not None else (b"{}" if method == "POST" else None)
        req = urllib.request.Request(
            f"{self.base_url}{path}", data=data, method=method, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            raw = resp.read()
        return json.loads(raw) if raw else None

    def stats(self) -> Dict[str, Any]:
        return self._call("GET", "/_emulator/stats")  # type: ignore[no-any-return]

    def exchanges(self) -> int:
        return int(self.stats()["exchanges"])

    def requests(self) -> List[Dict[str, Any]]:
        return self._call("GET", "/_emulator/requests")  # type: ignore[no-any-return]

    def jwt(self, **claims: Any) -> str:
        return self._call("POST", "/_emulator/jwt", claims)["jwt"]  # type: ignore[no-any-return]

    def faults(self, *faults: Dict[str, Any]) -> None:
        self._call("POST", "/_emulator/faults", {"faults": list(faults)})

    def revoke(self) -> None:
        self._call("POST", "/_emulator/revoke")

    def reset(self) -> None:
        self._call("POST", "/_emulator/reset")

    def config(self, **settings: Any) -> None:
        self._call("POST", "/_emulator/config", settings)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture(scope="session")
def emulator_session() -> Iterator[Emulator]:
    emu = Emulator()
    yield emu
    emu.stop()


@pytest.fixture
def emulator(emulator_session: Emulator) -> Emulator:
    emulator_session.reset()
    return emulator_session


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No ANTHROPIC_* from the outside; HOME, config and cache dirs are fresh."""
    for name in list(os.environ):
        if name.startswith("ANTHROPIC_") or name in ("XDG_CONFIG_HOME", "XDG_CACHE_HOME"):
            monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    return home


@pytest.fixture
def config_dir(isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = isolated_env / ".config" / "anthropic"
    d.mkdir(parents=True, mode=0o700)
    monkeypatch.setenv("ANTHROPIC_CONFIG_DIR", str(d))
    return d


def mint_source(emu: Emulator, counter: Optional[Path] = None) -> sources.Command:
    """An identity source that fetches a fresh JWT from the emulator at each exchange."""
    argv = [sys.executable, MINT, emu.base_url]
    if counter is not None:
        argv.append(str(counter))
    return sources.Command(argv, timeout_s=30)


def provider_kwargs(emu: Emulator, **overrides: Any) -> Dict[str, Any]:
    kwargs: Dict[str, Any] = dict(
        federation_rule_id=RULE,
        organization_id=ORG,
        service_account_id=SVAC,
        base_url=emu.base_url,
        identity_token=mint_source(emu),
    )
    kwargs.update(overrides)
    return kwargs


def write_profile(config_dir: Path, name: str, emu: Emulator, **extra: Any) -> Path:
    """A profile file like the SDKs read, using the minting command source."""
    configs = config_dir / "configs"
    configs.mkdir(parents=True, exist_ok=True, mode=0o700)
    auth: Dict[str, Any] = {
        "type": "oidc_federation",
        "federation_rule_id": RULE,
        "service_account_id": SVAC,
        "identity_token": mint_source(emu).to_dict(),
    }
    auth.update(extra.pop("authentication", {}))
    doc: Dict[str, Any] = {"version": "1.0", "organization_id": ORG, "base_url": emu.base_url, "authentication": auth}
    doc.update(extra)
    path = configs / f"{name}.json"
    path.write_text(json.dumps(doc))
    path.chmod(0o600)
    return path


def sync_provider(emu: Emulator, **overrides: Any) -> anthropic_wif.Provider:
    return anthropic_wif.Provider(**provider_kwargs(emu, **overrides))


def async_provider(emu: Emulator, **overrides: Any) -> anthropic_wif.AsyncProvider:
    return anthropic_wif.AsyncProvider(**provider_kwargs(emu, **overrides))
