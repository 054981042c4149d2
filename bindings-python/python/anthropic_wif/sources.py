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

__all__ = [
    "IdentitySource",
    "Literal",
    "File",
    "Env",
    "Command",
    "Url",
    "GithubActions",
    "Gitlab",
    "Circleci",
    "Bitbucket",
    "Terraform",
    "GcpMetadata",
    "AzureImds",
    "Kubernetes",
    "AwsSts",
    "Spiffe",
    "Auto",
]

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

    def __init__(self, var: str = "ANTHROPIC_IDENTITY_TOKEN") -> None:
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


class _Preset(IdentitySource):
    """A platform preset: a ``source`` tag and optional fields (unset ones are
    left out, so the engine's defaults apply)."""

    __slots__ = ("_fields",)
    _tag = ""

    def __init__(self, **fields: Any) -> None:
        self._fields = {k: (os.fspath(v) if isinstance(v, os.PathLike) else v) for k, v in fields.items() if v is not None}

    def to_dict(self) -> Dict[str, Any]:
        return {"source": self._tag, **self._fields}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._fields.items())
        return f"{type(self).__name__}({args})"


class Gitlab(_Preset):
    """GitLab CI ``id_tokens:`` variable (default ``ANTHROPIC_ID_TOKEN``)."""

    __slots__ = ()
    _tag = "gitlab"

    def __init__(self, var: Optional[str] = None) -> None:
        super().__init__(var=var)


class Circleci(_Preset):
    """CircleCI ``CIRCLE_OIDC_TOKEN_V2``."""

    __slots__ = ()
    _tag = "circleci"

    def __init__(self, var: Optional[str] = None) -> None:
        super().__init__(var=var)


class Bitbucket(_Preset):
    """Bitbucket Pipelines ``BITBUCKET_STEP_OIDC_TOKEN`` (the step needs ``oidc: true``)."""

    __slots__ = ()
    _tag = "bitbucket"

    def __init__(self, var: Optional[str] = None) -> None:
        super().__init__(var=var)


class Terraform(_Preset):
    """HCP Terraform ``TFC_WORKLOAD_IDENTITY_TOKEN``."""

    __slots__ = ()
    _tag = "terraform"

    def __init__(self, var: Optional[str] = None) -> None:
        super().__init__(var=var)


class GcpMetadata(_Preset):
    """Google Cloud metadata server identity token."""

    __slots__ = ()
    _tag = "gcp_metadata"

    def __init__(self, audience: Optional[str] = None) -> None:
        super().__init__(audience=audience)


class AzureImds(_Preset):
    """Azure managed identity (IMDS, or App Service's ``IDENTITY_ENDPOINT``);
    ``client_id`` picks a user-assigned identity."""

    __slots__ = ()
    _tag = "azure_imds"

    def __init__(self, audience: Optional[str] = None, client_id: Optional[str] = None) -> None:
        super().__init__(audience=audience, client_id=client_id)


class Kubernetes(_Preset):
    """A projected service-account token file (default
    ``/var/run/secrets/anthropic.com/token``)."""

    __slots__ = ()
    _tag = "kubernetes"

    def __init__(self, path: Optional[StrPath] = None) -> None:
        super().__init__(path=path)


class AwsSts(_Preset):
    """AWS STS ``GetWebIdentityToken``, signed with the ambient AWS credentials."""

    __slots__ = ()
    _tag = "aws_sts"

    def __init__(
        self,
        audience: Optional[str] = None,
        region: Optional[str] = None,
        duration_seconds: Optional[int] = None,
        signing_algorithm: Optional[str] = None,
    ) -> None:
        super().__init__(
            audience=audience, region=region, duration_seconds=duration_seconds, signing_algorithm=signing_algorithm
        )


class Spiffe(_Preset):
    """A SPIFFE JWT-SVID from the Workload API (``socket``, default
    ``$SPIFFE_ENDPOINT_SOCKET``) or a spiffe-helper file (``path``)."""

    __slots__ = ()
    _tag = "spiffe"

    def __init__(
        self,
        audience: Optional[str] = None,
        socket: Optional[str] = None,
        spiffe_id: Optional[str] = None,
        path: Optional[StrPath] = None,
    ) -> None:
        super().__init__(audience=audience, socket=socket, spiffe_id=spiffe_id, path=path)


class Auto(_Preset):
    """Detect the platform from the environment."""

    __slots__ = ()
    _tag = "auto"

    def __init__(self, audience: Optional[str] = None) -> None:
        super().__init__(audience=audience)


class Literal(IdentitySource):
    """An identity token written in the configuration itself (the Java and PHP
    SDKs' ``value``/``literal`` sources, for profiles those SDKs share). Never
    shown (``repr`` withholds it); like any identity token it serves one
    exchange: prefer a file or a variable."""

    __slots__ = ("_token",)

    def __init__(self, token: str) -> None:
        self._token = token

    def to_dict(self) -> Dict[str, Any]:
        return {"source": "literal", "token": self._token}

    def __repr__(self) -> str:
        return "Literal(<token withheld>)"
