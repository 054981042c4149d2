"""Identity-token sources: where the OIDC JWT comes from.

Each class builds one member of the profile file's ``identity_token`` union
(``{"source": "file", "path": …}`` and friends), so these are interchangeable
with a plain dict of the same shape::

    Provider(identity_token=sources.File("/var/run/secrets/anthropic.com/token"))
    Provider(identity_token={"source": "file", "path": "/var/run/secrets/anthropic.com/token"})

Every source is read afresh at each exchange (files rotate). Sources other
than ``file`` and ``env`` exist only in anthropic-wif: a profile that uses them
needs anthropic-wif as the provider (the official SDKs reject it).
"""

from __future__ import annotations

import os
from typing import Any, Dict, Mapping, Optional, Sequence, Union

__all__ = ["IdentitySource", "File", "Env", "Command", "Url", "GithubActions"]

StrPath = Union[str, "os.PathLike[str]"]


class IdentitySource:
    """Base class of the source objects; ``to_dict()`` gives the union member."""

    __slots__ = ()

    def to_dict(self) -> Dict[str, Any]:
        raise NotImplementedError

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IdentitySource) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(repr(sorted(self.to_dict().items(), key=lambda kv: kv[0])))


class File(IdentitySource):
    """A file holding the JWT (Kubernetes projected token, SPIFFE helper, …)."""

    __slots__ = ("path",)

    def __init__(self, path: StrPath) -> None:
        self.path = os.fspath(path)

    def to_dict(self) -> Dict[str, Any]:
        return {"source": "file", "path": self.path}

    def __repr__(self) -> str:
        return f"File({self.path!r})"


class Env(IdentitySource):
    """An environment variable holding the JWT itself (GitLab ``id_tokens``,
    CircleCI ``CIRCLE_OIDC_TOKEN_V2``, …). Only the name is kept here."""

    __slots__ = ("var",)

    def __init__(self, var: str) -> None:
        self.var = var

    def to_dict(self) -> Dict[str, Any]:
        return {"source": "env", "var": self.var}

    def __repr__(self) -> str:
        return f"Env({self.var!r})"


class Command(IdentitySource):
    """A program run without a shell; its stdout is the JWT."""

    __slots__ = ("command", "timeout_s")

    def __init__(self, command: Sequence[str], timeout_s: Optional[int] = None) -> None:
        if isinstance(command, (str, bytes)):
            raise TypeError(
                "Command(command=…) takes the argv as a list of strings, e.g. "
                "['gcloud', 'auth', 'print-identity-token'] (no shell is used)"
            )
        self.command = [str(part) for part in command]
        self.timeout_s = timeout_s

    def to_dict(self) -> Dict[str, Any]:
        d: Dict[str, Any] = {"source": "command", "command": list(self.command)}
        if self.timeout_s is not None:
            d["timeout_s"] = self.timeout_s
        return d

    def __repr__(self) -> str:
        return f"Command({self.command[:1]!r}…)" if len(self.command) > 1 else f"Command({self.command!r})"


class Url(IdentitySource):
    """An HTTP GET; ``${VAR}`` in the URL and header values is expanded from
    the environment at each exchange. ``field`` picks a top-level JSON string
    from the answer, else the trimmed body is the JWT."""

    __slots__ = ("url", "headers", "field")

    def __init__(self, url: str, headers: Optional[Mapping[str, str]] = None, field: Optional[str] = None) -> None:
        self.url = url
        self.headers = dict(headers or {})
        self.field = field

    def to_dict(self) -> Dict[str, Any]:
        d: Dict[str, Any] = {"source": "url", "url": self.url}
        if self.headers:
            d["headers"] = dict(self.headers)
        if self.field is not None:
            d["field"] = self.field
        return d

    def __repr__(self) -> str:
        # Header values may be literal secrets: show their names only.
        return f"Url({self.url!r}, headers={sorted(self.headers)!r}, field={self.field!r})"


class GithubActions(IdentitySource):
    """GitHub Actions OIDC (the workflow needs ``permissions: id-token: write``)."""

    __slots__ = ("audience",)

    def __init__(self, audience: Optional[str] = None) -> None:
        self.audience = audience

    def to_dict(self) -> Dict[str, Any]:
        d: Dict[str, Any] = {"source": "github_actions"}
        if self.audience is not None:
            d["audience"] = self.audience
        return d

    def __repr__(self) -> str:
        return f"GithubActions(audience={self.audience!r})"
