"""The official `anthropic` SDK (from PyPI) as the real client, with our
provider as `credentials=`, against the emulator over loopback."""

from __future__ import annotations

from pathlib import Path

import anthropic
from anthropic.lib.credentials import AccessToken as SdkAccessToken

import anthropic_wif
from conftest import MODEL, Emulator, mint_source, sync_provider, provider_kwargs, write_profile



def ask(client: anthropic.Anthropic, text: str = "hello") -> anthropic.types.Message:
    return client.messages.create(model=MODEL, max_tokens=32, messages=[{"role": "user", "content": text}])


def test_provider_returns_the_sdks_access_token_class(emulator: Emulator) -> None:
    provider = sync_provider(emulator)
    token = provider()
    assert type(token) is SdkAccessToken
    assert token.token.startswith("sk-ant-oat01-")
    assert isinstance(token.expires_at, int)
    assert emulator.exchanges() == 1
    # A warm call is the same token, without another exchange.
    again = provider()
    assert again.token == token.token and again.expires_at == token.expires_at
    assert provider.cached() is not None
    assert emulator.exchanges() == 1


def test_sync_client_several_requests_one_exchange(emulator: Emulator) -> None:
    provider = sync_provider(emulator)
    with anthropic.Anthropic(credentials=provider, base_url=emulator.base_url, max_retries=0) as client:
        for i in range(5):
            message = ask(client, f"request {i}")
            assert message.type == "message"
            assert message.content
    stats = emulator.stats()
    assert stats["exchanges"] == 1
    assert stats["messages"] == 5
    # The exchange carried exactly what docs/design.md §1 requires.
    (req,) = emulator.requests()
    body = req["body"]
    assert body["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    assert body["federation_rule_id"] == provider_kwargs(emulator)["federation_rule_id"]
    assert "scope" not in body


def test_api_401_forces_refresh_and_a_new_exchange(emulator: Emulator, tmp_path: Path) -> None:
    counter = tmp_path / "fetches"
    provider = sync_provider(emulator, identity_token=mint_source(emulator, counter))
    with anthropic.Anthropic(credentials=provider, base_url=emulator.base_url, max_retries=2) as client:
        ask(client)
        first = provider()
        assert emulator.exchanges() == 1
        # The server revokes every token it minted: the next API call gets a 401,
        # the SDK invalidates its cache and calls us with force_refresh=True.
        emulator.revoke()
        message = ask(client)
        assert message.type == "message"
    assert emulator.exchanges() == 2
    second = provider()
    assert second.token != first.token
    # force_refresh fetched a fresh identity token (a JWT is single-use).
    assert counter.read_text().count("fetch") == 2


def test_force_refresh_exchanges_again(emulator: Emulator) -> None:
    provider = sync_provider(emulator)
    a = provider()
    b = provider(force_refresh=True)
    assert a.token != b.token
    assert emulator.exchanges() == 2
    assert provider() .token == b.token
    assert emulator.exchanges() == 2


def test_for_base_url_exchanges_against_the_clients_deployment(emulator: Emulator) -> None:
    # No base_url given to the provider: the client's base_url decides.
    kwargs = provider_kwargs(emulator)
    del kwargs["base_url"]
    provider = anthropic_wif.Provider(**kwargs)
    with anthropic.Anthropic(credentials=provider, base_url=emulator.base_url, max_retries=0) as client:
        ask(client)
        # The client bound our provider through for_base_url.
        assert isinstance(client.credentials, anthropic_wif.Provider)
        assert client.credentials is not provider
    assert emulator.exchanges() == 1
    bound = provider.for_base_url(emulator.base_url)
    assert bound().token.startswith("sk-ant-oat01-")


def test_profile_pinning_base_url_keeps_it(emulator: Emulator, config_dir: Path) -> None:
    write_profile(config_dir, "pinned", emulator)
    provider = anthropic_wif.Provider(profile="pinned")
    # A client on another deployment binds us, but the profile pins the
    # deployment: the exchange still goes to the profile's base_url.
    other = provider.for_base_url("https://api.anthropic.com")
    token = other()
    assert token.token.startswith("sk-ant-oat01-")
    assert emulator.exchanges() == 1


def test_no_arguments_resolves_like_the_cli(emulator: Emulator, config_dir: Path, monkeypatch) -> None:
    # Environment federation (docs/design.md §3 step 4), no constructor arguments.
    jwt_file = config_dir / "jwt"
    jwt_file.write_text(emulator.jwt() + "\n")
    monkeypatch.setenv("ANTHROPIC_FEDERATION_RULE_ID", provider_kwargs(emulator)["federation_rule_id"])
    monkeypatch.setenv("ANTHROPIC_ORGANIZATION_ID", provider_kwargs(emulator)["organization_id"])
    monkeypatch.setenv("ANTHROPIC_IDENTITY_TOKEN_FILE", str(jwt_file))
    monkeypatch.setenv("ANTHROPIC_BASE_URL", emulator.base_url)
    provider = anthropic_wif.Provider()
    with anthropic.Anthropic(credentials=provider, max_retries=0) as client:
        ask(client)
    assert emulator.exchanges() == 1


def test_active_profile_from_config_dir(emulator: Emulator, config_dir: Path) -> None:
    write_profile(config_dir, "default", emulator)
    provider = anthropic_wif.Provider()
    assert provider().token.startswith("sk-ant-oat01-")
    assert emulator.exchanges() == 1
    # The token landed in the cache file the official SDKs read.
    cache = config_dir / "credentials" / "default.json"
    assert cache.exists()
    assert (cache.stat().st_mode & 0o077) == 0
