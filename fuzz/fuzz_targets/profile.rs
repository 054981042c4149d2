#![no_main]
//! The profile parser on arbitrary bytes: never panics; errors are config
//! errors naming the file.
use anthropic_wif_core::config::Env;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let env = Env::fixed([("ANTHROPIC_ORGANIZATION_ID", "00000000-0000-4000-8000-000000000001")]);
    if let Err(e) = anthropic_wif_core::fuzz_api::profile(data, &env) {
        assert_eq!(e.kind, anthropic_wif_core::ErrorKind::Config);
        assert!(e.message().contains("fuzz.json"));
    }
});
