#![no_main]
//! The token-response parser and the error-body summariser on arbitrary
//! bytes: never panic; a canary assertion never reaches a message.
use libfuzzer_sys::fuzz_target;

const JWT: &str = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJmdXp6In0.c2lnbmF0dXJlLWZ1eno";

fuzz_target!(|data: &[u8]| {
    match anthropic_wif_core::fuzz_api::token_response(data, JWT) {
        Ok((token, secs)) => {
            assert!(!token.is_empty());
            assert!(secs >= 1);
        }
        Err(why) => assert!(!why.contains(JWT)),
    }
    let summary = anthropic_wif_core::fuzz_api::error_body(data, Some("application/json"), JWT);
    assert!(!summary.contains(JWT));
    assert!(!summary.contains("sk-ant-"));
});
