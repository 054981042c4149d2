"""anthropic-wif: Workload Identity Federation for the Claude API.

A native credentials provider for the official ``anthropic`` SDK::

    import anthropic, anthropic_wif
    client = anthropic.Anthropic(credentials=anthropic_wif.Provider())

    client = anthropic.AsyncAnthropic(credentials=anthropic_wif.AsyncProvider())

and a health report of the configuration (``anthropic-wif doctor --json``)::

    report = anthropic_wif.doctor()

The provider trades a short-lived OIDC identity token (GitHub Actions,
Kubernetes, cloud metadata, …) for a short-lived Claude API access token, and
caches it in memory and in the on-disk cache shared with the ``anthropic-wif``
CLI and the official SDKs.
"""

from . import sources
from ._doctor import DoctorFinding, DoctorReport, adoctor, doctor
from ._errors import (
    ConfigurationError,
    EndpointUnavailableError,
    ExchangeDeniedError,
    IdentitySourceError,
    WifError,
)
from ._native import version as _engine_version
from ._options import IdentityTokenArg, ProviderOptions
from ._provider import AsyncProvider, Provider
from ._token import AccessToken

__version__: str = _engine_version()

__all__ = [
    "Provider",
    "AsyncProvider",
    "AccessToken",
    "IdentityTokenArg",
    "ProviderOptions",
    "WifError",
    "ConfigurationError",
    "IdentitySourceError",
    "ExchangeDeniedError",
    "EndpointUnavailableError",
    "sources",
    "doctor",
    "adoctor",
    "DoctorReport",
    "DoctorFinding",
    "__version__",
]
