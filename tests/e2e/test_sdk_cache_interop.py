"""The on-disk token cache is shared with the official Python SDK, both ways:
a token the SDK cached is used by anthropic-wif without an exchange, and a
token anthropic-wif cached is used by the SDK (and by its client for real API
calls) without an exchange."""
from __future__ import annotations

import json
import stat

import anthropic
from anthropic.lib.credentials import CredentialsFile


def test_a_token_cached_by_the_sdk_is_used_by_the_cli(sandbox):
    sandbox.profile("sdkfirst")
    sdk_token = CredentialsFile("sdkfirst")()
    assert sandbox.emu.stats()["exchanges"] == 1
    cached = sandbox.credentials("sdkfirst")
    assert cached["access_token"] == sdk_token.token

    out = sandbox.cli("token", "--profile", "sdkfirst")
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got == {"access_token": sdk_token.token, "expires_at": sdk_token.expires_at}
    assert sandbox.emu.stats()["exchanges"] == 1, "the CLI used the SDK's cached token"


def test_a_token_cached_by_the_cli_is_used_by_the_sdk_and_its_client(sandbox, monkeypatch):
    sandbox.profile("clifirst")
    out = sandbox.cli("token", "--profile", "clifirst")
    assert out.returncode == 0, out.stderr
    ours = json.loads(out.stdout)
    assert sandbox.emu.stats()["exchanges"] == 1

    path = sandbox.config_dir / "credentials" / "clifirst.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    sdk_token = CredentialsFile("clifirst")()
    assert (sdk_token.token, sdk_token.expires_at) == (ours["access_token"], ours["expires_at"])

    # The SDK's own client, configured only by ANTHROPIC_PROFILE, calls the API with our token.
    monkeypatch.setenv("ANTHROPIC_PROFILE", "clifirst")
    client = anthropic.Anthropic()
    msg = client.messages.create(model="claude-sonnet-5-5", max_tokens=16, messages=[{"role": "user", "content": "hi"}])
    assert msg.content[0].text
    assert sandbox.emu.stats()["exchanges"] == 1, "no exchange by the SDK: it used the shared cache"
    # The SDK kept the fields it does not know when it left the file alone; we rewrite keeping theirs too.
    assert sandbox.credentials("clifirst")["access_token"] == ours["access_token"]
