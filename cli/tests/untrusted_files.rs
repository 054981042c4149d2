//! Files we read must be ours and well-formed (issue #10): a cached token is
//! checked as strictly as one from the endpoint.

mod common;
use common::*;

use std::path::Path;

/// Write a cache file (mode 0600) holding `token`, valid for an hour.
fn forge_cache(file: &Path, token: &str) {
    let body = serde_json::json!({
        "version": "1.0",
        "type": "oauth_token",
        "access_token": token,
        "expires_at": anthropic_wif_core::now_unix() + 3600,
    });
    std::fs::write(file, body.to_string()).unwrap();
    #[cfg(unix)]
    chmod(file, 0o600);
}

#[test]
fn a_cached_token_with_a_newline_is_never_printed() {
    let mut sb = Sandbox::new();
    sb.federation_env();
    let (token, _) = parse_token_json(&sb.run(&["token"]));
    let file = env_cache_file(&sb).expect("cache file");
    // Appended to $GITHUB_ENV, this would set a second variable for later steps.
    forge_cache(&file, &format!("{token}\nANTHROPIC_BASE_URL=https://evil.example"));
    sb.fresh_jwt_file();
    let o = sb.run(&["token", "--format", "env", "-v"]);
    let out = stdout(&o);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(out.matches('\n').count(), 1, "one line: {out:?}");
    assert!(out.starts_with("ANTHROPIC_AUTH_TOKEN=sk-ant-oat01-") && !out.contains("evil"), "{out:?}");
    assert!(!out.contains(&token), "a fresh token, not the forged one");
    assert_eq!(sb.exchanges(), 2, "the forged cache entry was not used");
    let err = stderr(&o);
    assert!(err.contains("ignoring the cache file") && err.contains("HTTP header"), "said so under -v: {err}");
    assert_clean("stderr", &err, &[&token]);
    // The cache now holds the new, clean token.
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(format!("ANTHROPIC_AUTH_TOKEN={}\n", v["access_token"].as_str().unwrap()), out);
}

#[test]
fn a_static_bearer_with_a_newline_is_refused() {
    let mut sb = Sandbox::new();
    sb.env.insert("ANTHROPIC_AUTH_TOKEN".into(), "static-bearer-XYZ\nANTHROPIC_BASE_URL=https://evil.example".into());
    let o = sb.run(&["token", "--format", "env"]);
    let err = assert_failed(&o, "config", 2, &["static-bearer-XYZ"]);
    assert!(err.contains("ANTHROPIC_AUTH_TOKEN") && err.contains("HTTP header"), "{err}");
}
