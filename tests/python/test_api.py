"""Public API shape, the SDK-less fallback, typing, and the on-disk cache
shared with the CLI and the official SDK."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import anthropic
import pytest
from anthropic.lib.credentials import BaseURLBoundProvider

import anthropic_wif
from conftest import MODEL, ORG, RULE, SVAC, Emulator, cli_binary, provider_kwargs, sync_provider, write_profile


def test_public_names() -> None:
    for name in anthropic_wif.__all__:
        assert hasattr(anthropic_wif, name), name
    assert isinstance(anthropic_wif.__version__, str) and anthropic_wif.__version__


def test_is_a_base_url_bound_provider(emulator: Emulator) -> None:
    p = sync_provider(emulator)
    assert isinstance(p, BaseURLBoundProvider)
    assert isinstance(p.for_base_url(emulator.base_url), anthropic_wif.Provider)
    a = anthropic_wif.AsyncProvider(**provider_kwargs(emulator))
    assert isinstance(a.for_base_url(emulator.base_url), anthropic_wif.AsyncProvider)


def test_cached_is_none_before_first_call(emulator: Emulator) -> None:
    p = sync_provider(emulator, no_cache=True)
    assert p.cached() is None
    p()
    assert p.cached() is not None
    p.invalidate()
    assert p.cached() is None
    assert emulator.exchanges() == 1


def test_providers_do_not_pickle(emulator: Emulator) -> None:
    import pickle

    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(sync_provider(emulator))


def test_fallback_access_token_without_the_sdk(emulator: Emulator) -> None:
    # A process where `anthropic` cannot be imported gets anthropic_wif.AccessToken.
    kwargs = provider_kwargs(emulator)
    kwargs["identity_token"] = kwargs["identity_token"].to_dict()
    code = textwrap.dedent(
        f"""
        import sys
        sys.modules["anthropic"] = None  # import anthropic -> ImportError
        import anthropic_wif
        t = anthropic_wif.Provider(**{kwargs!r})()
        assert type(t) is anthropic_wif.AccessToken, type(t)
        assert t.token.startswith("sk-ant-oat01-")
        assert t.token not in repr(t) and t.token[-4:] in repr(t)
        assert anthropic_wif.WifError.__mro__[1] is Exception
        print("ok", t.expires_at)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ok ")


def file_profile(config_dir: Path, emu: Emulator, name: str) -> Path:
    """A profile only the official SDK can read too: identity token from a file."""
    jwt_file = config_dir / f"{name}.jwt"
    jwt_file.write_text(emu.jwt())
    return write_profile(
        config_dir, name, emu, authentication={"identity_token": {"source": "file", "path": str(jwt_file)}}
    )


def test_sdk_uses_the_token_we_cached(emulator: Emulator, config_dir: Path) -> None:
    file_profile(config_dir, emulator, "shared")
    token = anthropic_wif.Provider(profile="shared")()
    assert emulator.exchanges() == 1
    cache = json.loads((config_dir / "credentials" / "shared.json").read_text())
    assert cache["access_token"] == token.token and cache["expires_at"] == token.expires_at
    # The official SDK on the same profile takes the cached token: no exchange.
    with anthropic.Anthropic(profile="shared", max_retries=0) as client:
        client.messages.create(model=MODEL, max_tokens=8, messages=[{"role": "user", "content": "x"}])
    assert emulator.exchanges() == 1
    assert emulator.stats()["messages"] == 1


def test_we_use_the_token_the_sdk_cached(emulator: Emulator, config_dir: Path) -> None:
    file_profile(config_dir, emulator, "sdkfirst")
    with anthropic.Anthropic(profile="sdkfirst", max_retries=0) as client:
        client.messages.create(model=MODEL, max_tokens=8, messages=[{"role": "user", "content": "x"}])
    assert emulator.exchanges() == 1
    cached = json.loads((config_dir / "credentials" / "sdkfirst.json").read_text())
    token = anthropic_wif.Provider(profile="sdkfirst")()
    assert token.token == cached["access_token"]
    assert emulator.exchanges() == 1


def test_cli_and_python_share_one_token(emulator: Emulator, config_dir: Path) -> None:
    write_profile(config_dir, "both", emulator)
    token = anthropic_wif.Provider(profile="both")()
    out = subprocess.run(
        [cli_binary(), "token", "--profile", "both"], capture_output=True, text=True, timeout=120, env=dict(os.environ)
    )
    assert out.returncode == 0, out.stderr
    printed = json.loads(out.stdout)
    assert printed["access_token"] == token.token
    assert emulator.exchanges() == 1


def test_error_messages_are_the_clis(emulator: Emulator, tmp_path: Path) -> None:
    missing = tmp_path / "missing-token"
    args = dict(federation_rule_id=RULE, organization_id=ORG, service_account_id=SVAC, base_url=emulator.base_url)
    with pytest.raises(anthropic_wif.IdentitySourceError) as info:
        anthropic_wif.Provider(**args, identity_token=anthropic_wif.sources.File(missing))()
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in args.items()]
    out = subprocess.run(
        [cli_binary(), "token", *flags, f"--identity-token-file={missing}"],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ),
    )
    assert out.returncode == 3 and out.stdout == ""
    # The same engine message, word for word; the CLI adds its name and the kind.
    assert out.stderr.strip() == f"anthropic-wif: error [identity]: {info.value}"


@pytest.mark.skipif(shutil.which("mypy") is None and not os.path.exists(os.path.join(os.path.dirname(sys.executable), "mypy")), reason="mypy not installed")
def test_types_check_with_the_sdk(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        textwrap.dedent(
            """
            import anthropic
            import anthropic_wif
            from anthropic_wif import sources

            p = anthropic_wif.Provider(profile="x", identity_token=sources.File("/t"), no_cache=True)
            sync_client = anthropic.Anthropic(credentials=p)
            async_client = anthropic.AsyncAnthropic(credentials=anthropic_wif.AsyncProvider())
            tok = p(force_refresh=True)
            s: str = tok.token
            e: "int | None" = tok.expires_at
            q: anthropic_wif.Provider = p.for_base_url("https://api.anthropic.com")
            try:
                p()
            except anthropic_wif.ExchangeDeniedError as err:
                code: "int | None" = err.status_code
                rid: "str | None" = err.request_id
            report: anthropic_wif.DoctorReport = anthropic_wif.doctor(exchange=False, profile="x")
            exit_code: int = report["exit_code"]
            healthy: bool = report["healthy"]
            for finding in report["findings"]:
                fcode: str = finding["code"]
            masked: "str | None" = report["exchange"].get("token_masked")

            async def later() -> anthropic_wif.DoctorReport:
                return await anthropic_wif.adoctor(expected_audience="https://a.example")
            """
        )
    )
    mypy = os.path.join(os.path.dirname(sys.executable), "mypy")
    mypy = mypy if os.path.exists(mypy) else "mypy"
    # The installed package itself (its .py files and the native module's stub)…
    out = subprocess.run(
        [mypy, "--strict", "--no-incremental", "-p", "anthropic_wif"], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert out.returncode == 0, out.stdout + out.stderr
    # …and a user's code passing our providers to the SDK's typed parameters.
    out = subprocess.run(
        [mypy, "--strict", "--no-incremental", str(sample)], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_every_source_class_is_accepted_by_the_engine() -> None:
    from anthropic_wif import sources

    examples = [
        sources.File("/var/run/secrets/anthropic.com/token"),
        sources.Env("MY_JWT"),
        sources.Command(["print-token", "--aud", "x"], timeout_s=10),
        sources.Url("http://127.0.0.1:1/token", headers={"Authorization": "Bearer ${T}"}, field="value"),
        sources.GithubActions(audience="https://api.anthropic.com"),
        sources.Gitlab(),
        sources.Circleci(),
        sources.Bitbucket(),
        sources.Terraform(var="TFC_WORKLOAD_IDENTITY_TOKEN"),
        sources.GcpMetadata(audience="https://api.anthropic.com"),
        sources.AzureImds(client_id="00000000-0000-0000-0000-000000000000"),
        sources.Kubernetes(),
        sources.AwsSts(region="us-east-1", duration_seconds=300),
        sources.Spiffe(socket="unix:///tmp/agent.sock"),
        sources.Auto(),
    ]
    tags = set()
    for spec in examples:
        # Construction resolves and validates the whole configuration (no network).
        p = anthropic_wif.Provider(federation_rule_id=RULE, organization_id=ORG, identity_token=spec, no_cache=True)
        tags.add(spec.to_dict()["source"])
        assert spec.to_dict()["source"] in repr(p)
        assert "Bearer" not in repr(spec)  # header values are not shown
    assert len(tags) == len(examples)


def test_repr_shows_the_configuration_and_never_a_secret(emulator: Emulator) -> None:
    jwt = emulator.jwt()
    env = {"HOME": os.environ["HOME"], "MY_JWT": jwt}
    p = anthropic_wif.Provider(
        **provider_kwargs(emulator, identity_token=anthropic_wif.sources.Env("MY_JWT"), no_cache=True, env=env)
    )
    text = repr(p)
    assert text.startswith(f"Provider(federation_rule_id='{RULE}', organization_id='{ORG}'"), text
    assert "identity_token=<env>" in text and "no_cache=True" in text and "env=<2 variables>" in text, text
    assert jwt not in text
    bound = p.for_base_url("https://other.example")
    assert repr(bound).endswith("for_base_url='https://other.example')"), repr(bound)


def test_help_lists_every_argument_of_the_engine_table() -> None:
    import inspect

    params = list(inspect.signature(anthropic_wif.Provider).parameters)
    assert params == list(anthropic_wif.ProviderOptions.__annotations__), params
    assert "SPEC" not in (anthropic_wif.Provider.__doc__ or "")
    doctor_params = list(inspect.signature(anthropic_wif.doctor).parameters)
    assert doctor_params[:2] == ["exchange", "expected_audience"] and doctor_params[2:] == params


def test_an_explicit_empty_optional_id_is_left_out_and_not_taken_from_the_environment(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_SERVICE_ACCOUNT_ID", SVAC)
    monkeypatch.setenv("ANTHROPIC_WORKSPACE_ID", "wrkspc_01FromTheEnvironment00")
    anthropic_wif.Provider(**provider_kwargs(emulator, service_account_id="", workspace_id="", no_cache=True))()
    body = emulator.requests()[-1]["body"]
    assert "service_account_id" not in body and "workspace_id" not in body, body


def test_the_env_argument_fixes_the_environment_and_lock_timeout_is_taken(emulator: Emulator) -> None:
    env = {
        "HOME": os.environ["HOME"],
        "ANTHROPIC_FEDERATION_RULE_ID": RULE,
        "ANTHROPIC_ORGANIZATION_ID": ORG,
        "ANTHROPIC_BASE_URL": emulator.base_url,
        "ANTHROPIC_IDENTITY_TOKEN": emulator.jwt(),
    }
    token = anthropic_wif.Provider(env=env, no_cache=True, lock_timeout=0.5)()
    assert token.token.startswith("sk-ant-oat01-")
    assert emulator.requests()[-1]["body"]["federation_rule_id"] == RULE
