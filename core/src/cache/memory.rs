//! In-memory token cache with single-flight refresh and the SDKs' two refresh
//! windows (SPEC §5), scaled down for short-lived tokens.
