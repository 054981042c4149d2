#![no_main]
//! The `${VAR}` expander on arbitrary templates: never panics; a set
//! variable's value never appears in an error.
use anthropic_wif_core::config::Env;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(template) = std::str::from_utf8(data) {
        let env = Env::fixed([("SECRET", "s3cr3t-expanded-value"), ("HOST", "127.0.0.1")]);
        match anthropic_wif_core::fuzz_api::expand(template, &env) {
            Ok((text, _)) => {
                if !template.contains('$') {
                    assert_eq!(text, template);
                }
            }
            Err(e) => assert!(!e.message().contains("s3cr3t-expanded-value")),
        }
    }
});
