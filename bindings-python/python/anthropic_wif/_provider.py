"""`Provider` and `AsyncProvider`: credentials providers for the anthropic SDK.

    client = anthropic.Anthropic(credentials=anthropic_wif.Provider())
    client = anthropic.AsyncAnthropic(credentials=anthropic_wif.AsyncProvider())

All the work (configuration, identity token, exchange, caches, locking) is done
by the native engine, the same one the `anthropic-wif` CLI runs.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from typing import TYPE_CHECKING, Any, Optional

from . import _native
from ._options import IdentityTokenArg, ProviderOptions, keyword_signature, native_options
from ._token import token_class

if TYPE_CHECKING:
    from anthropic.lib.credentials import AccessToken
    from typing_extensions import Unpack

__all__ = ["Provider", "AsyncProvider", "IdentityTokenArg"]

_log = logging.getLogger("anthropic_wif")


class _Base:
    __slots__ = ("_native", "_description", "__weakref__")

    _native: _native.NativeProvider
    _description: str

    def __init__(self, **options: Unpack[ProviderOptions]) -> None:
        native = native_options(f"{type(self).__name__}()", dict(options))
        self._native = _native.NativeProvider(token_class=token_class(), options=native)
        self._description = ", ".join(f"{name}={shown}" for name, shown in native.summary())
        notice = self._native.notice()
        if notice is not None:
            _log.warning("anthropic-wif: %s", notice)

    def _bound(self, base_url: str) -> Any:
        if not isinstance(base_url, str):
            base_url = str(base_url)
        other = object.__new__(type(self))
        other._native = self._native.for_base_url(base_url)
        other._description = ", ".join(filter(None, [self._description, f"for_base_url={base_url!r}"]))
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
    then profiles under ``~/.config/anthropic`` (docs/design.md §3). Keyword
    arguments (:class:`anthropic_wif.ProviderOptions`) mirror the CLI flags in
    snake_case and come before everything else; an unknown or malformed one
    raises :class:`~anthropic_wif.ConfigurationError`.

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


_Base.__init__.__signature__ = keyword_signature(  # type: ignore[attr-defined]
    inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
)


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
