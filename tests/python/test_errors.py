"""Every engine error kind arrives as its exception class with the right
attributes, and no secret ever shows in repr, str or exception text."""

from __future__ import annotations

import pickle
import re
import socket
import sys
from pathlib import Path

import anthropic
import pytest

import anthropic_wif
from anthropic_wif import (
    ConfigurationError,
    EndpointUnavailableError,
    ExchangeDeniedError,
    IdentitySourceError,
    WifError,
    sources,
)
from conftest import MODEL, ORG, RULE, SVAC, Emulator, provider_kwargs, sync_provider

JWT_RE = re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
TOKEN_RE = re.compile(r"sk-ant-[a-z]{3}\d\d-[A-Za-z0-9_-]{5,}")


def assert_no_secret(text: str, *secrets: str) -> None:
    assert not TOKEN_RE.search(text), text
    assert not JWT_RE.search(text), text
    for s in secrets:
        assert s not in text, text


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return int(port)


def test_hierarchy() -> None:
    for cls in (ConfigurationError, IdentitySourceError, ExchangeDeniedError, EndpointUnavailableError):
        assert issubclass(cls, WifError)
    # With the SDK importable, our errors are SDK errors: the client lets them
    # through unchanged instead of wrapping them in APIConnectionError.
    assert issubclass(WifError, anthropic.AnthropicError)


def test_configuration_error_names_the_argument(emulator: Emulator) -> None:
    with pytest.raises(ConfigurationError) as info:
        anthropic_wif.Provider(**provider_kwargs(emulator, organization_id="not-a-uuid"))()
    err = info.value
    assert err.kind == "config"
    assert err.status_code is None and err.request_id is None
    assert "organization_id" in str(err)


def test_configuration_error_for_a_bad_identity_dict() -> None:
    with pytest.raises(ConfigurationError) as info:
        anthropic_wif.Provider(
            federation_rule_id=RULE, organization_id=ORG, identity_token={"source": "carrier-pigeon"}
        )
    assert "identity_token" in str(info.value)
    assert info.value.kind == "config"


def test_identity_token_as_a_string_is_refused_without_echoing_it() -> None:
    jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzZWNyZXQifQ.c2lnbmF0dXJlc2VjcmV0"
    with pytest.raises(ConfigurationError) as info:
        anthropic_wif.Provider(federation_rule_id=RULE, organization_id=ORG, identity_token=jwt)  # type: ignore[arg-type]
    assert_no_secret(str(info.value) + repr(info.value), jwt)
    assert "sources.File" in str(info.value)


def test_wrong_argument_types_are_configuration_errors_like_in_every_face() -> None:
    with pytest.raises(ConfigurationError, match="argument organization_id must be a string, got an int"):
        anthropic_wif.Provider(organization_id=12345)  # type: ignore[typeddict-item]
    with pytest.raises(ConfigurationError, match="argument no_cache must be True or False, got a str"):
        anthropic_wif.Provider(no_cache="yes")  # type: ignore[typeddict-item]
    with pytest.raises(ConfigurationError, match="argument config_dir must be a string \\(a path\\), got a bytes"):
        anthropic_wif.Provider(config_dir=b"/tmp")  # type: ignore[typeddict-item]
    with pytest.raises(TypeError):
        anthropic_wif.Provider("positional")  # type: ignore[call-arg]


def test_unknown_arguments_say_did_you_mean() -> None:
    with pytest.raises(ConfigurationError) as info:
        anthropic_wif.Provider(federation_rule="fdrl_x")  # type: ignore[typeddict-unknown-key]
    assert str(info.value).startswith(
        'Provider(): unknown argument "federation_rule"; did you mean federation_rule_id? (known: profile, '
    ), str(info.value)
    assert info.value.kind == "config"
    with pytest.raises(ConfigurationError, match="AsyncProvider\\(\\): unknown argument \"baseURL\"; did you mean base_url\\?"):
        anthropic_wif.AsyncProvider(baseURL="https://x")  # type: ignore[typeddict-unknown-key]


def test_min_remaining_and_lock_timeout_have_the_bounds_of_every_face() -> None:
    for bad in (-1, 86401, 1.5, True):
        with pytest.raises(ConfigurationError, match="argument min_remaining must be a whole number of seconds from 0 to 86400"):
            anthropic_wif.Provider(min_remaining=bad)  # type: ignore[typeddict-item]
    with pytest.raises(ConfigurationError, match="argument lock_timeout must be a number of seconds from 0 to 3600"):
        anthropic_wif.Provider(lock_timeout=3601)


def test_identity_source_error(emulator: Emulator, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-token"
    provider = sync_provider(emulator, identity_token=sources.File(missing))
    with pytest.raises(IdentitySourceError) as info:
        provider()
    err = info.value
    assert err.kind == "identity"
    assert str(missing) in str(err)
    assert err.status_code is None
    assert emulator.exchanges() == 0


def test_identity_source_empty_file(emulator: Emulator, tmp_path: Path) -> None:
    empty = tmp_path / "empty-token"
    empty.write_text("  \n")
    with pytest.raises(IdentitySourceError, match="empty"):
        sync_provider(emulator, identity_token={"source": "file", "path": str(empty)})()


def test_exchange_denied_401_has_status_and_request_id(emulator_session: Emulator, tmp_path: Path) -> None:
    # An emulator that knows only one rule: ours is unknown, so the exchange is
    # denied with the server's deliberately opaque 401.
    strict = Emulator("--rule", "fdrl_01OnlyThisRuleAbCdEfGhIj")
    try:
        jwt = strict.jwt()
        token_file = tmp_path / "jwt"
        token_file.write_text(jwt)
        provider = anthropic_wif.Provider(
            federation_rule_id=RULE,
            organization_id=ORG,
            service_account_id=SVAC,
            base_url=strict.base_url,
            identity_token=sources.File(token_file),
        )
        with pytest.raises(ExchangeDeniedError) as info:
            provider()
        err = info.value
        assert err.kind == "denied"
        assert err.status_code == 401
        assert err.request_id and err.request_id.startswith("req_")
        assert err.request_id in str(err)
        assert_no_secret(str(err) + repr(err) + str(err.args), jwt)
    finally:
        strict.stop()


def test_exchange_denied_echoed_assertion_is_scrubbed(emulator: Emulator, tmp_path: Path) -> None:
    # A 400 whose body echoes the request, assertion included (docs/design.md §1).
    jwt = emulator.jwt()
    token_file = tmp_path / "jwt"
    token_file.write_text(jwt)
    emulator.faults({"kind": "echo", "status": 400})
    provider = sync_provider(emulator, identity_token=sources.File(token_file))
    with pytest.raises(ExchangeDeniedError) as info:
        provider()
    err = info.value
    assert err.status_code == 400
    text = str(err) + repr(err) + str(err.args) + str(err.__dict__)
    assert_no_secret(text, jwt)


def test_endpoint_unavailable_connection_refused(tmp_path: Path) -> None:
    token_file = tmp_path / "jwt"
    token_file.write_text("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.")
    provider = anthropic_wif.Provider(
        federation_rule_id=RULE,
        organization_id=ORG,
        base_url=f"http://127.0.0.1:{closed_port()}",
        identity_token=sources.File(token_file),
        no_cache=True,
    )
    with pytest.raises(EndpointUnavailableError) as info:
        provider()
    err = info.value
    assert err.kind == "unavailable"
    assert err.status_code is None
    assert_no_secret(str(err) + repr(err))


def test_endpoint_unavailable_after_5xx_has_status_and_request_id(emulator: Emulator) -> None:
    emulator.faults({"kind": "status", "status": 503, "count": 10})
    with pytest.raises(EndpointUnavailableError) as info:
        sync_provider(emulator)()
    err = info.value
    assert err.status_code == 503
    assert err.request_id and err.request_id.startswith("req_")


def test_exception_reaches_the_sdk_caller_unchanged_and_is_not_retried(emulator: Emulator, tmp_path: Path) -> None:
    # An identity command that fails, counting its runs.
    counter = tmp_path / "runs"
    failing = sources.Command(
        [sys.executable, "-c", f"open({str(counter)!r}, 'a').write('run\\n'); import sys; sys.exit('no token for you')"]
    )
    provider = sync_provider(emulator, identity_token=failing)
    with anthropic.Anthropic(credentials=provider, base_url=emulator.base_url, max_retries=2) as client:
        with pytest.raises(IdentitySourceError) as info:
            client.messages.create(model=MODEL, max_tokens=8, messages=[{"role": "user", "content": "x"}])
    assert "no token for you" in str(info.value)
    assert counter.read_text().count("run") == 1
    assert emulator.exchanges() == 0


def test_exceptions_pickle_with_their_attributes() -> None:
    err = ExchangeDeniedError("Authentication failed", kind="denied", status_code=401, request_id="req_123")
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is ExchangeDeniedError
    assert (back.status_code, back.request_id, back.kind, str(back)) == (401, "req_123", "denied", str(err))


def test_no_token_in_repr_or_str(emulator: Emulator) -> None:
    provider = sync_provider(emulator)
    token = provider()
    raw = token.token
    for text in (repr(token), str(token), repr(provider), str(provider), repr(provider.cached())):
        assert raw not in text
        assert raw[:-4] not in text
        assert not JWT_RE.search(text)
    assert repr(token).count(raw[-4:]) <= 1
    own = anthropic_wif.AccessToken(raw, token.expires_at)
    assert raw not in repr(own) and raw not in str(own)
    assert raw[-4:] in repr(own)
