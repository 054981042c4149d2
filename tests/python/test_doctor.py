"""doctor() / adoctor(): the core diagnosis from Python, the same report as
`anthropic-wif doctor --json`, against a real emulator."""

from __future__ import annotations

import asyncio
import copy
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import pytest

import anthropic_wif
from anthropic_wif import ConfigurationError, sources
from conftest import ORG, RULE, SVAC, Emulator, cli_binary

JWT_RE = re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
TOKEN_RE = re.compile(r"sk-ant-[a-z]{3}\d\d-[A-Za-z0-9_-]{5,}")


def assert_no_secrets(text: str, *secrets: str) -> None:
    for s in secrets:
        assert s not in text, "a secret is in the report"
    assert not JWT_RE.search(text), "a JWT is in the report"
    assert not TOKEN_RE.search(text), "an access token is in the report"


def jwt_file(emu: Emulator, tmp_path: Path, name: str = "d", **claims: Any) -> Tuple[str, Path, Dict[str, Any]]:
    """A fresh emulator JWT in a file, and doctor/provider arguments reading it with their own cache file."""
    jwt = emu.jwt(**claims)
    d = tmp_path / name
    d.mkdir(mode=0o700)
    f = d / "identity-token"
    f.write_text(jwt)
    f.chmod(0o600)
    kwargs: Dict[str, Any] = dict(
        federation_rule_id=RULE,
        organization_id=ORG,
        service_account_id=SVAC,
        base_url=emu.base_url,
        identity_token=sources.File(f),
        credentials_path=d / "cache" / "token.json",
    )
    return jwt, d, kwargs


def codes(report: Dict[str, Any], severity: Optional[str] = None) -> List[str]:
    return [f["code"] for f in report["findings"] if severity is None or f["severity"] == severity]


def check_shape(report: Dict[str, Any]) -> None:
    assert report["version"] == 1
    for k in ("healthy", "exit_code", "errors", "warnings", "checked_at", "config", "ids", "exchange", "findings"):
        assert k in report, k
    assert isinstance(report["healthy"], bool)
    assert report["errors"] == len(codes(report, "error"))
    assert report["warnings"] == len(codes(report, "warning"))
    assert report["healthy"] == (report["errors"] == 0)
    assert abs(report["checked_at"] - time.time()) < 60
    for f in report["findings"]:
        assert re.fullmatch(r"[a-z_]+", f["code"]), f
        assert f["severity"] in ("error", "warning", "info"), f
        assert f["message"] and f["fix"], f


def test_healthy_report_sends_nothing_and_writes_nothing(emulator: Emulator, tmp_path: Path) -> None:
    jwt, d, kwargs = jwt_file(emulator, tmp_path)
    report = anthropic_wif.doctor(**kwargs)
    check_shape(dict(report))
    assert report["healthy"] is True, report["findings"]
    assert report["exit_code"] == 0 and report["errors"] == 0
    config = report["config"]
    assert config["ok"] is True
    assert config.get("step") == "explicit"
    assert config.get("resolution") == "federation"
    rule = next(f for f in config["fields"] if f["name"] == "federation_rule_id")
    assert rule["value"] == RULE
    assert rule["origin"]["kind"] == "explicit"
    assert rule["origin"].get("name") == "argument federation_rule_id", "origins spell the argument as Python does"
    assert len(report["ids"]) >= 3 and all(i["ok"] for i in report["ids"]), report["ids"]
    identity = report["identity"]
    assert identity["source"] == "file"
    assert identity["fetched"] is True
    assert identity.get("size_bytes") == len(jwt)
    token = identity["token"]
    assert token["iss"]
    assert token["aud"] == ["https://api.anthropic.com"]
    assert token["jti_present"] is True
    assert token["remaining_s"] is not None and token["remaining_s"] > 0
    assert report["cache"]["state"] == "missing"
    assert report["exchange"] == {"requested": False, "performed": False}

    assert_no_secrets(json.dumps(report), jwt, jwt.split(".")[2])
    assert emulator.stats()["token_requests"] == 0, "a plain diagnosis sends nothing"
    assert not (d / "cache").exists(), "a plain diagnosis writes nothing (no cache, no lock)"
    # The JWT was only fetched, not consumed: a provider can still exchange it.
    t = anthropic_wif.Provider(**kwargs)()
    assert t.token.startswith("sk-ant-oat01-")


def test_same_report_as_the_cli(emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, _, kwargs = jwt_file(emulator, tmp_path)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", emulator.base_url)
    monkeypatch.setenv("ANTHROPIC_FEDERATION_RULE_ID", RULE)
    monkeypatch.setenv("ANTHROPIC_ORGANIZATION_ID", ORG)
    monkeypatch.setenv("ANTHROPIC_SERVICE_ACCOUNT_ID", SVAC)
    monkeypatch.setenv("ANTHROPIC_IDENTITY_TOKEN_FILE", str(kwargs["identity_token"].path))
    ours = anthropic_wif.doctor()
    out = subprocess.run(
        [cli_binary(), "doctor", "--json"], capture_output=True, text=True, timeout=60, env=dict(os.environ)
    )
    assert out.returncode == 0, out.stderr
    cli = json.loads(out.stdout)

    def volatile(r: Any) -> Any:
        c = copy.deepcopy(dict(r))
        del c["checked_at"]
        if c.get("identity", {}).get("token"):
            del c["identity"]["token"]["remaining_s"]
        return c

    # Same fields, same values, same key order.
    assert json.dumps(volatile(ours)) == json.dumps(volatile(cli))
    assert ours["config"].get("step") == "env_federation"
    assert abs(ours["checked_at"] - cli["checked_at"]) <= 5
    assert emulator.stats()["token_requests"] == 0


def test_warnings_wrong_audience_and_long_lifetime(emulator: Emulator, tmp_path: Path) -> None:
    jwt, _, kwargs = jwt_file(emulator, tmp_path, aud="https://not-anthropic.example", ttl=7200)
    report = anthropic_wif.doctor(**kwargs)
    check_shape(dict(report))
    assert report["healthy"] is True, "warnings do not make it unhealthy"
    assert report["exit_code"] == 0
    warnings = codes(dict(report), "warning")
    assert "jwt_audience_mismatch" in warnings, report["findings"]
    assert "jwt_long_lived" in warnings, report["findings"]
    mismatch = next(f for f in report["findings"] if f["code"] == "jwt_audience_mismatch")
    assert "not-anthropic.example" in mismatch["message"]
    assert report["identity"]["expected_audience"] == "https://api.anthropic.com"
    assert_no_secrets(json.dumps(report), jwt)

    told = anthropic_wif.doctor(expected_audience=" https://not-anthropic.example ", **kwargs)
    assert told["identity"]["expected_audience"] == "https://not-anthropic.example"
    assert "jwt_audience_mismatch" not in codes(dict(told)), told["findings"]
    assert "jwt_long_lived" in codes(dict(told), "warning")


def test_expired_identity_token_is_exit_code_3_and_the_exchange_is_skipped(emulator: Emulator, tmp_path: Path) -> None:
    jwt, d, kwargs = jwt_file(emulator, tmp_path, ttl=-120)
    report = anthropic_wif.doctor(exchange=True, **kwargs)
    check_shape(dict(report))
    assert report["healthy"] is False
    assert report["exit_code"] == 3
    expired = next(f for f in report["findings"] if f["code"] == "jwt_expired")
    assert expired["severity"] == "error" and expired.get("kind") == "identity"
    remaining = report["identity"]["token"]["remaining_s"]
    assert remaining is not None and remaining < 0
    assert report["exchange"]["requested"] is True
    assert report["exchange"]["performed"] is False
    assert "exchange_skipped" in codes(dict(report))
    assert emulator.stats()["token_requests"] == 0, "nothing sent after an error"
    assert not (d / "cache").exists()
    assert_no_secrets(json.dumps(report), jwt)


def test_exchange_reports_status_request_id_masked_token_and_caches_it(emulator: Emulator, tmp_path: Path) -> None:
    jwt, _, kwargs = jwt_file(emulator, tmp_path)
    report = anthropic_wif.doctor(exchange=True, **kwargs)
    check_shape(dict(report))
    assert report["healthy"] is True, report["findings"]
    ex = report["exchange"]
    assert ex["requested"] is True and ex["performed"] is True
    assert ex.get("ok") is True
    assert ex.get("status") == 200
    assert re.fullmatch(r"req_[A-Za-z0-9_-]+", ex.get("request_id", "")), ex
    assert ex.get("scope") == "user:inference"
    assert ex.get("granted_lifetime_s", 0) > 0
    masked = ex.get("token_masked", "")
    assert re.fullmatch(r"sk-ant-oat01-…[A-Za-z0-9_-]{4}", masked), masked
    assert ex.get("cached_in") == str(kwargs["credentials_path"])
    assert report["cache"]["state"] == "valid"
    assert emulator.exchanges() == 1
    reqs = emulator.requests()
    listed = reqs if isinstance(reqs, list) else reqs["requests"]
    assert len(listed) == 1
    assert listed[0]["body"]["assertion"] == jwt, "the diagnosed token was the one exchanged"

    # The next provider uses the cached token (the JWT in the file is spent).
    t = anthropic_wif.Provider(**kwargs)()
    assert emulator.exchanges() == 1
    assert t.token.endswith(masked[-4:])
    assert t.expires_at == ex.get("expires_at")
    # Only the masked form is in the report.
    text = json.dumps(report, ensure_ascii=False)
    assert t.token not in text
    assert text.count("sk-ant-") == 1, "one sk-ant- string: the masked token"
    assert_no_secrets(text.replace(masked, "(masked)"), jwt, t.token)


def test_denied_exchange_is_exit_code_4_with_status_and_request_id(emulator: Emulator, tmp_path: Path) -> None:
    emulator.faults({"kind": "echo", "status": 401})
    jwt, d, kwargs = jwt_file(emulator, tmp_path)
    report = anthropic_wif.doctor(exchange=True, **kwargs)
    assert report["healthy"] is False
    assert report["exit_code"] == 4
    ex = report["exchange"]
    assert ex.get("ok") is False and ex.get("status") == 401
    assert ex.get("request_id", "").startswith("req_")
    assert ex["error"]["kind"] == "denied"
    f = next(x for x in report["findings"] if x["code"] == "exchange_failed")
    assert f.get("kind") == "denied"
    assert not (d / "cache" / "token.json").exists()
    assert_no_secrets(json.dumps(report), jwt)


def test_a_configuration_that_does_not_resolve_is_a_report(emulator: Emulator, tmp_path: Path) -> None:
    # The isolated environment has no ANTHROPIC_* variables and no profile.
    report = anthropic_wif.doctor()
    check_shape(dict(report))
    assert report["healthy"] is False
    assert report["exit_code"] == 2
    assert report["config"]["ok"] is False
    assert report["config"]["error"]["kind"] == "config"
    assert codes(dict(report), "error") == ["config_error"]

    _, _, kwargs = jwt_file(emulator, tmp_path)
    kwargs["organization_id"] = "not-a-uuid"
    bad = anthropic_wif.doctor(**kwargs)
    assert bad["exit_code"] == 2
    assert codes(dict(bad), "error")
    assert "argument organization_id" in json.dumps(bad["findings"])
    assert emulator.stats()["token_requests"] == 0


BAD_ARGUMENTS = [
    ({"exchange": "yes"}, r"doctor\(\): argument exchange must be True or False"),
    ({"exchange": 1}, r"argument exchange must be True or False"),
    ({"expected_audience": 5}, r"argument expected_audience must be a string"),
    ({"bogus": 1}, r'unknown argument "bogus" \(known: profile, '),
    ({"baseurl": "https://x"}, r'unknown argument "baseurl"; did you mean base_url\?'),
    ({"identity_token": {"source": "telepathy"}}, r"identity_token"),
    ({"identity_token": "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"}, r"identity_token"),
    ({"organization_id": 5}, r"argument organization_id must be a string"),
    ({"no_cache": "no"}, r"argument no_cache must be True or False"),
    ({"min_remaining": -1}, r"argument min_remaining must be a whole number of seconds from 0 to 86400"),
]


@pytest.mark.parametrize("kwargs,pattern", BAD_ARGUMENTS, ids=[str(sorted(k)) + str(i) for i, (k, _) in enumerate(BAD_ARGUMENTS)])
def test_bad_arguments_raise_configuration_error(kwargs: Dict[str, Any], pattern: str) -> None:
    with pytest.raises(ConfigurationError, match=pattern) as info:
        anthropic_wif.doctor(**kwargs)
    assert info.value.kind == "config"
    assert_no_secrets(str(info.value) + repr(info.value))

    async def run() -> Any:
        return await anthropic_wif.adoctor(**kwargs)

    with pytest.raises(ConfigurationError, match=pattern):
        asyncio.run(run())


def slow_command(jwt: str, delay: float) -> sources.Command:
    """An identity command that takes `delay` seconds, then prints `jwt`."""
    script = f"import sys, time; time.sleep({delay}); sys.stdout.write(sys.argv[1])"
    return sources.Command([sys.executable, "-c", script, jwt], timeout_s=30)


def test_doctor_releases_the_gil(emulator: Emulator, tmp_path: Path) -> None:
    jwt = emulator.jwt()
    ticks = 0
    stop = threading.Event()

    def ticker() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            time.sleep(0.01)

    t = threading.Thread(target=ticker)
    t.start()
    try:
        report = anthropic_wif.doctor(
            federation_rule_id=RULE,
            organization_id=ORG,
            base_url=emulator.base_url,
            identity_token=slow_command(jwt, 0.8),
            credentials_path=tmp_path / "token.json",
        )
    finally:
        stop.set()
        t.join()
    assert report["identity"]["fetched"] is True, report["identity"]
    assert report["healthy"] is True, report["findings"]
    assert ticks >= 10, f"another thread ticked {ticks} times during a >800 ms diagnosis"


def test_adoctor_runs_off_the_event_loop_and_matches_doctor(emulator: Emulator, tmp_path: Path) -> None:
    jwt = emulator.jwt()
    kwargs: Dict[str, Any] = dict(
        federation_rule_id=RULE,
        organization_id=ORG,
        base_url=emulator.base_url,
        identity_token=slow_command(jwt, 0.8),
        credentials_path=tmp_path / "token.json",
    )

    async def main() -> Tuple[Any, int]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        task = asyncio.create_task(ticker())
        try:
            report = await anthropic_wif.adoctor(**kwargs)
        finally:
            task.cancel()
        return report, ticks

    report, ticks = asyncio.run(main())
    assert report["healthy"] is True, report["findings"]
    assert ticks >= 10, f"the loop ticked {ticks} times during a >800 ms diagnosis"
    sync = anthropic_wif.doctor(**kwargs)

    def volatile(r: Any) -> Any:
        c = copy.deepcopy(dict(r))
        del c["checked_at"]
        del c["identity"]["token"]["remaining_s"]
        return c

    assert json.dumps(volatile(report)) == json.dumps(volatile(sync))


def test_adoctor_with_exchange(emulator: Emulator, tmp_path: Path) -> None:
    jwt, _, kwargs = jwt_file(emulator, tmp_path)
    report = asyncio.run(anthropic_wif.adoctor(exchange=True, **kwargs))
    assert report["exchange"].get("status") == 200
    assert report["exchange"].get("request_id", "").startswith("req_")
    assert emulator.exchanges() == 1
    assert_no_secrets(json.dumps(report, ensure_ascii=False).replace(report["exchange"]["token_masked"], "(masked)"), jwt)
