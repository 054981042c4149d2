"""`doctor()` and `adoctor()`: the secret-free health report of a configuration.

    report = anthropic_wif.doctor()                    # like `anthropic-wif doctor --json`
    report = anthropic_wif.doctor(exchange=True)       # also one real exchange
    report = await anthropic_wif.adoctor(profile="ci")

The report is the dict `anthropic-wif doctor --json` prints for the same
configuration (same keys, same order, same values). A configuration that does
not resolve is a report with ``exit_code`` 2, not an exception; only malformed
arguments raise :class:`~anthropic_wif.ConfigurationError`.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from typing import TYPE_CHECKING, Any, Dict, List, Optional
from typing import TypedDict

from . import _native
from ._options import ProviderOptions, keyword_signature, native_options
from ._provider import _resolve

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = [
    "doctor",
    "adoctor",
    "DoctorReport",
    "DoctorFinding",
    "DoctorConfig",
    "DoctorField",
    "DoctorOrigin",
    "DoctorIdCheck",
    "DoctorIdentity",
    "DoctorRecord",
    "DoctorJwt",
    "DoctorCache",
    "DoctorExchange",
    "DoctorError",
]


# ---------------------------------------------------------------------------
# the report's shape (docs/doctor.md, "The JSON report")


class _OriginRequired(TypedDict):
    kind: str  # "explicit" | "env" | "profile" | "default"
    display: str


class DoctorOrigin(_OriginRequired, total=False):
    """Where a setting came from."""

    name: str  # the argument or environment variable
    path: str  # the profile file


class _ErrorRequired(TypedDict):
    kind: str
    message: str


class DoctorError(_ErrorRequired, total=False):
    """An engine error inside the report (never raised)."""

    status: int
    request_id: str
    error_code: str


class DoctorField(TypedDict):
    name: str
    value: str
    origin: DoctorOrigin


class _ConfigRequired(TypedDict):
    ok: bool
    fields: List[DoctorField]


class DoctorConfig(_ConfigRequired, total=False):
    """Which step of the configuration chain decided, and every field's origin."""

    step: str
    description: str
    resolution: str  # "federation" | "api_key" | "static_bearer" | "user_oauth"
    config_dir: str
    profile: str
    profile_path: str
    shadowed: str
    error: DoctorError


class _IdCheckRequired(TypedDict):
    field: str
    value: str
    origin: DoctorOrigin
    ok: bool


class DoctorIdCheck(_IdCheckRequired, total=False):
    error: str


class DoctorJwt(TypedDict):
    """The identity token decoded without verification (never the token itself)."""

    alg: Optional[str]
    kid: Optional[str]
    typ: Optional[str]
    iss: Optional[str]
    sub: Optional[str]
    aud: List[str]
    iat: Optional[int]
    nbf: Optional[int]
    exp: Optional[int]
    lifetime_s: Optional[int]
    remaining_s: Optional[int]
    jti_present: bool
    claim_names: List[str]


class _IdentityRequired(TypedDict):
    source: str
    description: str
    settings: Dict[str, Any]
    origin: DoctorOrigin
    expected_audience: str
    fetched: bool


class _RecordRequired(TypedDict):
    path: str
    state: str  # "new" | "consumed" | "in_flight" | "presented" | "unusable"


class DoctorRecord(_RecordRequired, total=False):
    """The record of presented identity tokens (hashed ``jti`` and issuer only)."""

    at: int
    by: str
    detail: str


class DoctorIdentity(_IdentityRequired, total=False):
    error: DoctorError
    size_bytes: int
    token: DoctorJwt
    decode_error: str
    record: DoctorRecord


class _CacheRequired(TypedDict):
    state: str  # "missing" | "valid" | "expired" | "insecure" | "corrupt" | "disabled"


class DoctorCache(_CacheRequired, total=False):
    path: str
    expires_at: int
    remaining_s: int
    detail: str


class _ExchangeRequired(TypedDict):
    requested: bool
    performed: bool


class DoctorExchange(_ExchangeRequired, total=False):
    """The exchange (only with ``exchange=True``); the token only masked."""

    skipped_reason: str
    ok: bool
    status: int
    request_id: str
    granted_lifetime_s: int
    expires_at: int
    scope: str
    token_masked: str  # "sk-ant-oat01-…abcd"
    cached_in: str
    error: DoctorError


class _FindingRequired(TypedDict):
    code: str
    severity: str  # "error" | "warning" | "info"
    message: str
    fix: str


class DoctorFinding(_FindingRequired, total=False):
    kind: str  # the error kind, for errors


class _ReportRequired(TypedDict):
    version: int
    healthy: bool
    exit_code: int  # the CLI's exit code: 0 healthy, else the first error's kind
    errors: int
    warnings: int
    checked_at: int
    config: DoctorConfig
    ids: List[DoctorIdCheck]
    exchange: DoctorExchange
    findings: List[DoctorFinding]


class DoctorReport(_ReportRequired, total=False):
    """What `doctor()` returns: the JSON object of `anthropic-wif doctor --json`."""

    identity: DoctorIdentity
    cache: DoctorCache


# ---------------------------------------------------------------------------
# the calls


def _options(call: str, exchange: bool, expected_audience: Optional[str], options: Dict[str, Any]) -> _native.NativeOptions:
    """The engine's checked options: the provider's and doctor's own."""
    return native_options(call, {**options, "exchange": exchange, "expected_audience": expected_audience}, doctor=True)


def doctor(
    *, exchange: bool = False, expected_audience: Optional[str] = None, **options: Unpack[ProviderOptions]
) -> DoctorReport:
    """Diagnose a configuration: the report of ``anthropic-wif doctor --json``.

    Takes the :class:`~anthropic_wif.Provider` arguments (with none, the
    configuration comes from the environment and profiles, as the provider's
    would). It resolves the configuration, validates the ids, fetches the
    identity token and decodes it without verifying it, and looks at the
    on-disk cache. Nothing is sent and nothing written unless
    ``exchange=True``, which makes one real exchange (consuming the identity
    token) and caches the access token it gets, so the next provider uses it.

    ``expected_audience``: the audience the federation rule expects (default:
    the source preset's, else ``https://api.anthropic.com``).

    Never raises for a broken configuration: that is the report (``healthy``
    False, ``exit_code`` the CLI's). Malformed arguments raise
    :class:`~anthropic_wif.ConfigurationError`. The GIL is released while the
    diagnosis runs.
    """
    native = _options("doctor()", exchange, expected_audience, dict(options))
    return json.loads(_native.doctor(native))  # type: ignore[no-any-return]


async def adoctor(
    *, exchange: bool = False, expected_audience: Optional[str] = None, **options: Unpack[ProviderOptions]
) -> DoctorReport:
    """:func:`doctor` for async code: the diagnosis runs on the engine's own
    runtime and never blocks the event loop."""
    native = _options("adoctor()", exchange, expected_audience, dict(options))
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        # Not asyncio (trio through anyio): the blocking call on a worker thread.
        import anyio.to_thread

        text = await anyio.to_thread.run_sync(lambda: _native.doctor(native))
        return json.loads(text)  # type: ignore[no-any-return]
    future: asyncio.Future[str] = loop.create_future()
    _native.doctor_async(native, loop, future, _resolve)
    return json.loads(await future)  # type: ignore[no-any-return]


# help() and inspect.signature show every argument (the provider's from ProviderOptions).
_SIGNATURE = keyword_signature(
    inspect.Parameter("exchange", inspect.Parameter.KEYWORD_ONLY, default=False, annotation="bool"),
    inspect.Parameter("expected_audience", inspect.Parameter.KEYWORD_ONLY, default=None, annotation="Optional[str]"),
)
setattr(doctor, "__signature__", _SIGNATURE)
setattr(adoctor, "__signature__", _SIGNATURE)
