#![no_main]
//! The JWT decoder used by doctor on arbitrary text: never panics.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(d) = anthropic_wif_core::jwt::decode_unverified(s) {
            let _ = (d.exp(), d.iat(), d.nbf(), d.jti(), d.iss(), d.sub(), d.aud(), d.alg());
        }
    }
});
