"""`Provider` and `AsyncProvider`: credentials providers for the anthropic SDK.

    client = anthropic.Anthropic(credentials=anthropic_wif.Provider())
    client = anthropic.AsyncAnthropic(credentials=anthropic_wif.AsyncProvider())

All the work (configuration, identity token, exchange, caches, locking) is done
by the native engine, the same one the `anthropic-wif` CLI runs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from typing import TYPE_CHECKING, Any, Dict, Mapping, Optional, Union

from . import _native
from ._errors import ConfigurationError
from ._token import token_class
from .sources import IdentitySource

if TYPE_CHECKING:
    from anthropic.lib.credentials import AccessToken

__all__ = ["Provider", "AsyncProvider", "IdentityTokenArg"]

_log = logging.getLogger("anthropic_wif")

IdentityTokenArg = Union[IdentitySource, Mapping[str, Any], "os.PathLike[str]"]

_STR_ARGS = (
    "profile",
    "federation_rule_id",
    "organization_id",
    "service_account_id",
    "workspace_id",
    "base_url",
)


def _identity_json(value: object) -> Optional[str]:
    if value is None:
        return None
    if isinstance(value, IdentitySource):
        spec: Dict[str, Any] = value.to_dict()
    elif isinstance(value, Mapping):
        spec = dict(value)
    elif isinstance(value, os.PathLike):
        spec = {"source": "file", "path": os.fspath(value)}
    else:
        # Never echo the value: it may well be the JWT itself.
        raise ConfigurationError(
            f"argument identity_token takes a source object or a dict, not a {type(value).__name__}; "
            "pass anthropic_wif.sources.File(path) (or {'source': 'file', 'path': …}) for a token file, "
            "or anthropic_wif.sources.Env('VAR') for a variable holding the token",
            kind="config",
        )
    try:
        return json.dumps(spec)
    except (TypeError, ValueError) as err:
        raise ConfigurationError(
            f"argument identity_token is not JSON-serialisable ({type(err).__name__}); "
            "use only str, int, list and dict values, as in a profile file",
            kind="config",
        ) from None


def _native_kwargs(
    *,
    profile: Optional[str],
    federation_rule_id: Optional[str],
    organization_id: Optional[str],
    service_account_id: Optional[str],
    workspace_id: Optional[str],
    base_url: Optional[str],
    identity_token: Optional[IdentityTokenArg],
    config_dir: Union[str, "os.PathLike[str]", None],
    credentials_path: Union[str, "os.PathLike[str]", None],
    no_cache: bool,
    min_remaining: Optional[int],
) -> Dict[str, Any]:
    values: Dict[str, Any] = {
        "profile": profile,
        "federation_rule_id": federation_rule_id,
        "organization_id": organization_id,
        "service_account_id": service_account_id,
        "workspace_id": workspace_id,
        "base_url": base_url,
    }
    for name in _STR_ARGS:
        v = values[name]
        if v is not None and not isinstance(v, str):
            raise TypeError(f"argument {name} must be a str or None, got {type(v).__name__}")
    for name, path in (("config_dir", config_dir), ("credentials_path", credentials_path)):
        if path is not None and not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"argument {name} must be a str, an os.PathLike or None, got {type(path).__name__}")
        values[name] = os.fspath(path) if path is not None else None
    if not isinstance(no_cache, bool):
        raise TypeError(f"argument no_cache must be a bool, got {type(no_cache).__name__}")
    if min_remaining is not None and (isinstance(min_remaining, bool) or not isinstance(min_remaining, int)):
        raise TypeError(f"argument min_remaining must be an int (seconds) or None, got {type(min_remaining).__name__}")
    values["identity_token_json"] = _identity_json(identity_token)
    values["disk_cache"] = not no_cache
    values["min_remaining"] = min_remaining
    return values


def _describe(kwargs: Mapping[str, Any]) -> str:
    shown = []
    for name in _STR_ARGS + ("config_dir", "credentials_path"):
        v = kwargs.get(name)
        if v is not None:
            shown.append(f"{name}={v!r}")
    spec = kwargs.get("identity_token_json")
    if spec is not None:
        try:
            shown.append(f"identity_token=<{json.loads(spec).get('source', '?')}>")
        except (ValueError, AttributeError):
            shown.append("identity_token=<?>")
    if kwargs.get("disk_cache") is False:
        shown.append("no_cache=True")
    return ", ".join(shown)


class _Base:
    __slots__ = ("_native", "_description", "__weakref__")

    _native: _native.NativeProvider
    _description: str

    def __init__(
        self,
        *,
        profile: Optional[str] = None,
        federation_rule_id: Optional[str] = None,
        organization_id: Optional[str] = None,
        service_account_id: Optional[str] = None,
        workspace_id: Optional[str] = None,
        base_url: Optional[str] = None,
        identity_token: Optional[IdentityTokenArg] = None,
        config_dir: Union[str, "os.PathLike[str]", None] = None,
        credentials_path: Union[str, "os.PathLike[str]", None] = None,
        no_cache: bool = False,
        min_remaining: Optional[int] = None,
    ) -> None:
        kwargs = _native_kwargs(
            profile=profile,
            federation_rule_id=federation_rule_id,
            organization_id=organization_id,
            service_account_id=service_account_id,
            workspace_id=workspace_id,
            base_url=base_url,
            identity_token=identity_token,
            config_dir=config_dir,
            credentials_path=credentials_path,
            no_cache=no_cache,
            min_remaining=min_remaining,
        )
        self._native = _native.NativeProvider(token_class=token_class(), options=_native.NativeOptions(**kwargs))
        self._description = _describe(kwargs)
        notice = self._native.notice()
        if notice is not None:
            _log.warning("anthropic-wif: %s", notice)

    def _bound(self, base_url: str) -> Any:
        if not isinstance(base_url, str):
            base_url = str(base_url)
        other = object.__new__(type(self))
        other._native = self._native.for_base_url(base_url)
        other._description = (
            f"{self._description}, bound to {base_url!r}" if self._description else f"bound to {base_url!r}"
        )
        return other

    def cached(self) -> Optional[AccessToken]:
        """The in-memory token if it is fresh, else ``None``. No I/O, never blocks."""
        return self._native.cached()

    def invalidate(self) -> None:
        """Forget the in-memory token; the next call re-reads the disk cache
        or exchanges. ``force_refresh=True`` also skips the disk cache."""
        self._native.invalidate()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._description})"

    def __reduce__(self) -> Any:
        raise TypeError(
            f"{type(self).__name__} cannot be pickled; create one in each process "
            "(they share the on-disk token cache, so this costs no extra exchange)"
        )


class Provider(_Base):
    """A credentials provider for ``anthropic.Anthropic(credentials=…)``.

    With no arguments it resolves its configuration exactly like the
    ``anthropic-wif`` CLI with no flags: ``ANTHROPIC_*`` environment variables,
    then profiles under ``~/.config/anthropic`` (docs/design.md §3). Keyword arguments
    mirror the CLI flags and come before everything else.

    Thread-safe: all threads share one in-memory token and at most one
    exchange is in flight; the on-disk cache is shared with the CLI, the
    official SDKs and other processes.
    """

    __slots__ = ()

    def __call__(self, *, force_refresh: bool = False) -> AccessToken:
        """Return an access token with enough life left.

        ``force_refresh=True`` (the SDK passes it after a 401) skips the
        in-memory and on-disk caches and exchanges a fresh identity token.
        The GIL is released during any I/O.
        """
        return self._native.get(force_refresh)  # type: ignore[no-any-return]

    def for_base_url(self, base_url: str) -> Provider:
        """The provider a client with ``base_url`` exchanges through, so the
        token comes from the same deployment as the API calls. A profile or
        an explicit ``base_url=`` that pins the deployment keeps it."""
        return self._bound(base_url)  # type: ignore[no-any-return]


def _resolve(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    """Runs on the event loop (call_soon_threadsafe): complete the future unless
    its awaiter gave up (cancelled)."""
    if future.done():
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


class AsyncProvider(_Base):
    """A credentials provider for ``anthropic.AsyncAnthropic(credentials=…)``.

    Same configuration as :class:`Provider`. ``__call__`` is an ``async def``
    (the SDK detects that) that never blocks the event loop: a warm token is
    returned at once, anything else runs on the engine's own runtime and
    completes an asyncio future.
    """

    __slots__ = ()

    async def __call__(self, *, force_refresh: bool = False) -> AccessToken:
        """Return an access token with enough life left (see ``Provider.__call__``)."""
        native = self._native
        if not force_refresh:
            token = native.cached()
            if token is not None:
                return token  # type: ignore[no-any-return]
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            # Not asyncio (trio through anyio): run the blocking call on a worker thread.
            import anyio.to_thread

            return await anyio.to_thread.run_sync(native.get, force_refresh)
        future: asyncio.Future[Any] = loop.create_future()
        native.get_async(force_refresh, loop, future, _resolve)
        return await future  # type: ignore[no-any-return]

    def for_base_url(self, base_url: str) -> AsyncProvider:
        """See :meth:`Provider.for_base_url`."""
        return self._bound(base_url)  # type: ignore[no-any-return]
