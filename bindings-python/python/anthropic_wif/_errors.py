"""Exceptions raised by anthropic-wif.

Every failure of the engine arrives as one of these, with the same message the
`anthropic-wif` CLI prints. Messages and attributes never contain an identity
token or an access token.

When the ``anthropic`` SDK is importable, :class:`WifError` derives from
``anthropic.AnthropicError``. That matters: the SDK client lets its own error
types through a credentials provider unchanged, but wraps any other exception
in a generic ``APIConnectionError("Connection error.")`` and retries it, which
would hide the message and repeat a doomed exchange.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Optional, Tuple

if TYPE_CHECKING:
    from anthropic import AnthropicError as _ErrorBase
else:
    try:
        from anthropic import AnthropicError as _ErrorBase
    except ImportError:
        _ErrorBase = Exception

__all__ = [
    "WifError",
    "ConfigurationError",
    "IdentitySourceError",
    "ExchangeDeniedError",
    "EndpointUnavailableError",
]


class WifError(_ErrorBase):
    """Base class of every anthropic-wif error.

    Attributes:
        kind: ``"config"``, ``"identity"``, ``"denied"``, ``"unavailable"`` or
            ``"internal"`` (the engine's error kind; the CLI's exit code follows it).
        status_code: HTTP status of the token endpoint's answer, when there was one.
        request_id: the token endpoint's ``request-id`` header, when there was one.
        error_code: the OAuth ``error`` code (or Anthropic error ``type``), when given; or the
            engine's own code, e.g. ``identity_token_consumed`` / ``identity_token_expired`` (an
            identity token that was not sent: already exchanged on this machine, or expired).
    """

    kind: str
    status_code: Optional[int]
    request_id: Optional[str]
    error_code: Optional[str]

    _default_kind = "internal"

    def __init__(
        self,
        message: str,
        *,
        kind: Optional[str] = None,
        status_code: Optional[int] = None,
        request_id: Optional[str] = None,
        error_code: Optional[str] = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind if kind is not None else self._default_kind
        self.status_code = status_code
        self.request_id = request_id
        self.error_code = error_code

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        extra = ""
        if self.status_code is not None:
            extra += f", status_code={self.status_code!r}"
        if self.request_id is not None:
            extra += f", request_id={self.request_id!r}"
        return f"{type(self).__name__}({self.message!r}{extra})"

    # Keyword-only attributes survive pickling (multiprocessing sends exceptions
    # between processes).
    def __reduce__(self) -> Tuple[Any, Tuple[str], Dict[str, Any]]:
        return (type(self), (self.message,), dict(self.__dict__))


class ConfigurationError(WifError):
    """Bad or missing configuration: an argument, environment variable,
    profile file or id. Fix the configuration; retrying will not help."""

    _default_kind = "config"


class IdentitySourceError(WifError):
    """The identity-token source failed: file missing, command failed,
    metadata endpoint unreachable, empty token, …"""

    _default_kind = "identity"


class ExchangeDeniedError(WifError):
    """The token endpoint refused the exchange (a 4xx answer). ``status_code``
    and ``request_id`` tell which; a 401 means the federation rule does not
    match the identity token, or the token was already used."""

    _default_kind = "denied"


class EndpointUnavailableError(WifError):
    """The token endpoint could not be reached, timed out, kept answering
    5xx/429, or answered something that is not a token response."""

    _default_kind = "unavailable"
