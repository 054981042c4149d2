"""The access-token value the providers hand out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

__all__ = ["AccessToken", "token_class"]


def _mask(token: object) -> str:
    text = str(token)
    return f"...{text[-4:]}" if len(text) >= 12 else "**********"


@dataclass(frozen=True)
class AccessToken:
    """An access token and its expiry (unix seconds, ``None`` = unknown).

    The providers return ``anthropic.lib.credentials.AccessToken`` when the
    ``anthropic`` SDK is importable (the SDK checks the type) and this class,
    with the same fields, otherwise. ``repr``/``str`` show at most the last 4
    characters of the token.
    """

    token: str
    expires_at: Optional[int] = None

    def __repr__(self) -> str:
        return f"AccessToken(token='{_mask(self.token)}', expires_at={self.expires_at!r})"

    __str__ = __repr__


def token_class() -> Any:
    """The SDK's AccessToken class when ``anthropic`` is importable, else ours."""
    try:
        from anthropic.lib.credentials import AccessToken as SdkAccessToken
    except ImportError:
        return AccessToken
    return SdkAccessToken
