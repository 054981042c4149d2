"""Type stubs for the native extension (PyO3). Internal: use the public API
in ``anthropic_wif`` instead."""

import asyncio
from typing import Any, Callable, Optional

class NativeOptions:
    def __init__(
        self,
        *,
        profile: Optional[str] = None,
        federation_rule_id: Optional[str] = None,
        organization_id: Optional[str] = None,
        service_account_id: Optional[str] = None,
        workspace_id: Optional[str] = None,
        base_url: Optional[str] = None,
        identity_token_json: Optional[str] = None,
        config_dir: Optional[str] = None,
        credentials_path: Optional[str] = None,
        disk_cache: bool = True,
        min_remaining: Optional[int] = None,
    ) -> None: ...

class NativeProvider:
    def __init__(self, *, token_class: Callable[[str, Optional[int]], Any], options: NativeOptions) -> None: ...
    def get(self, force_refresh: bool = False) -> Any: ...
    def cached(self) -> Optional[Any]: ...
    def get_async(
        self,
        force_refresh: bool,
        event_loop: asyncio.AbstractEventLoop,
        future: "asyncio.Future[Any]",
        resolve: Callable[["asyncio.Future[Any]", bool, Any], None],
    ) -> None: ...
    def for_base_url(self, base_url: str) -> "NativeProvider": ...
    def invalidate(self) -> None: ...
    def notice(self) -> Optional[str]: ...

def doctor(options: NativeOptions, *, exchange: bool = False, expected_audience: Optional[str] = None) -> str: ...
def doctor_async(
    options: NativeOptions,
    exchange: bool,
    expected_audience: Optional[str],
    event_loop: asyncio.AbstractEventLoop,
    future: "asyncio.Future[Any]",
    resolve: Callable[["asyncio.Future[Any]", bool, Any], None],
) -> None: ...
def version() -> str: ...
def _fork_generation() -> int: ...
