"""The Python face on issue 13 items 3 to 5: no identity token is sent twice
or expired (design.md §1), and profiles in other SDKs' shapes load
(docs/sdk-profiles.md §1). Against the emulator, which accepts each JWT once."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

import anthropic_wif
from anthropic_wif import sources
from conftest import Emulator, provider_kwargs, write_profile


def _sent(emulator: Emulator) -> list:
    return [r["body"]["assertion"] for r in emulator.requests()]


def _rotate(path: Path, jwt: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(jwt + "\n")
    tmp.replace(path)


def test_a_consumed_token_file_is_waited_for_not_sent_again(emulator: Emulator, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    first, second = emulator.jwt(), emulator.jwt()
    _rotate(token_file, first)
    provider = anthropic_wif.Provider(**provider_kwargs(emulator, identity_token=sources.File(token_file)))
    provider()
    # After a 401 the SDK forces a refresh; the file still holds the consumed
    # JWT, so the call waits for the file to rotate instead of sending it.
    rotate = threading.Timer(1.5, _rotate, (token_file, second))
    rotate.start()
    started = time.monotonic()
    provider(force_refresh=True)
    rotate.join()
    assert time.monotonic() - started >= 1.2
    assert _sent(emulator) == [first, second]
    assert emulator.stats()["denied"] == 0


def test_an_expired_token_is_not_sent(emulator: Emulator, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    expired = emulator.jwt(ttl=-120)
    _rotate(token_file, expired)
    provider = anthropic_wif.Provider(**provider_kwargs(emulator, identity_token=sources.File(token_file)))
    with pytest.raises(anthropic_wif.IdentitySourceError) as caught:
        provider()
    err = caught.value
    assert err.error_code == "identity_token_expired" and err.kind == "identity"
    assert str(token_file) in str(err) and "expired 12" in str(err) and expired not in str(err)
    assert emulator.stats()["token_requests"] == 0


def test_profiles_in_other_sdks_shapes_serve_the_python_face(
    emulator: Emulator, config_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    php_literal, ruby_env = emulator.jwt(), emulator.jwt()
    monkeypatch.setenv("RUBY_JWT", ruby_env)
    write_profile(config_dir, "php", emulator, authentication={"identity_token": {"source": "literal", "token": php_literal}})
    write_profile(config_dir, "ruby", emulator, authentication={"identity_token": {"source": "env", "value": "RUBY_JWT"}})
    for name, jwt in (("php", php_literal), ("ruby", ruby_env)):
        monkeypatch.setenv("ANTHROPIC_PROFILE", name)
        provider = anthropic_wif.Provider()
        assert provider().token.startswith("sk-ant-oat01-")
        assert _sent(emulator)[-1] == jwt
        assert jwt not in repr(provider)
        report = anthropic_wif.doctor()
        assert jwt not in json.dumps(report)
    report = anthropic_wif.doctor(profile="php")
    assert report["identity"]["source"] == "literal"
    assert report["identity"]["settings"]["token"] == "(not shown)"
