"""The keyword arguments of `Provider`, `AsyncProvider`, `doctor()` and `adoctor()`.

They are the CLI's flags in snake_case, and they are parsed and checked by the
engine's one options table (core/src/options.rs, docs/design.md §11): an
unknown argument, a value of the wrong type or out of range is a
:class:`~anthropic_wif.ConfigurationError` that names the argument (and says
"did you mean …?"), with the same message the CLI and the Node module give.
``None`` means "not given"; an explicit ``""`` is passed on (an optional id
given as ``""`` is left out, never replaced from the environment).

``ProviderOptions`` below is the static declaration of those arguments for
type checkers; tests/python/test_schema.py fails when it and the engine's
table disagree.
"""

from __future__ import annotations

import inspect
import os
from typing import Any, Dict, Mapping, Optional, Union

from typing import TypedDict

from . import _native
from .sources import File, IdentitySource

__all__ = ["ProviderOptions", "IdentityTokenArg"]

IdentityTokenArg = Union[IdentitySource, Mapping[str, Any], "os.PathLike[str]"]
"""An identity-token source: a :mod:`anthropic_wif.sources` object, a dict in the
profile's ``identity_token`` shape, or a path (a token file)."""


class ProviderOptions(TypedDict, total=False):
    """The keyword arguments of :class:`~anthropic_wif.Provider` (all optional)."""

    profile: Optional[str]
    """A profile name: ``<config_dir>/configs/<profile>.json``."""
    federation_rule_id: Optional[str]
    """``fdrl_…``"""
    organization_id: Optional[str]
    """The organization UUID."""
    service_account_id: Optional[str]
    """``svac_…``; ``""`` leaves it out."""
    workspace_id: Optional[str]
    """``wrkspc_…`` or ``default``; ``""`` leaves it out."""
    base_url: Optional[str]
    """API base URL (``https://``; plain ``http://`` only for loopback hosts)."""
    config_dir: Union[str, "os.PathLike[str]", None]
    """The config dir (default ``$ANTHROPIC_CONFIG_DIR``, else ``~/.config/anthropic``)."""
    credentials_path: Union[str, "os.PathLike[str]", None]
    """The on-disk token cache file (default: the profile's, shared with the SDKs)."""
    identity_token: Optional[IdentityTokenArg]
    """Where the identity JWT comes from."""
    no_cache: Optional[bool]
    """Do not read or write the on-disk token cache (nor take its lock); the
    record of presented identity tokens is still kept."""
    min_remaining: Optional[int]
    """Hand out only tokens with at least this many seconds left (0 to 86400;
    default: the refresh policy alone, as the SDK keeps its own cache)."""
    lock_timeout: Optional[float]
    """Seconds to wait (0 to 3600, default 60) for another process exchanging
    for the same cache file; then a ``WifError`` of kind ``internal``."""
    rotation_wait: Optional[float]
    """When the identity token was already exchanged on this machine and no
    cached access token is usable: seconds to wait (0 to 600, default 60) for
    the token file to be rotated (or to ask a minting source again)."""
    env: Optional[Mapping[str, str]]
    """The environment to resolve from and for identity sources to read,
    fixed for the provider's life (default: a copy of ``os.environ`` taken at
    construction and at every call that may exchange). ``ANTHROPIC_WIF_LOG``
    is read from ``os.environ`` either way."""


def native_options(call: str, options: Dict[str, Any], *, doctor: bool = False) -> _native.NativeOptions:
    """The engine's checked options for `call`'s keyword arguments."""
    token = options.get("identity_token")
    if isinstance(token, os.PathLike):
        options = {**options, "identity_token": File(token)}
    return _native.NativeOptions(call, options, doctor=doctor)


def keyword_signature(*leading: inspect.Parameter) -> inspect.Signature:
    """``(*leading, *, <every ProviderOptions key>=None)``: what ``help()`` and
    ``inspect.signature`` show for a function taking ``**options``."""
    params = list(leading) + [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation)
        for name, annotation in ProviderOptions.__annotations__.items()
    ]
    return inspect.Signature(params)
