//! Entry points for the fuzz targets under `fuzz/` and the property tests:
//! thin wrappers over the parsers that take untrusted input. Not a stable API.

use crate::env::Env;
use crate::error::Error;
use crate::secret::Secret;

/// Judge a 2xx token-endpoint body as the exchange does: JSON object, then
/// the RFC 6749 §5.1 fields. Returns the token and `expires_in`, or a reason.
pub fn token_response(body: &[u8], assertion: &str) -> Result<(Secret, i64), String> {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(mut obj)) => {
            crate::exchange::response::parse_success(&mut obj, assertion).map(|p| (p.access_token, p.expires_in))
        }
        Ok(other) => Err(format!("the body is {}, not a JSON object", crate::json::type_name(&other))),
        Err(_) => Err("the body is not JSON".into()),
    }
}

/// The safe summary of an error body, as it reaches a message.
pub fn error_body(body: &[u8], content_type: Option<&str>, assertion: &str) -> String {
    crate::exchange::response::error_details(body, content_type, &[assertion]).render()
}

/// `${VAR}` expansion of a url-source template.
pub fn expand(template: &str, env: &Env) -> Result<(String, Vec<Secret>), Error> {
    crate::identity::expand::expand(template, env, "fuzz source", "the url").map(|e| (e.text, e.values))
}

/// Parse profile bytes (name `fuzz`, path `/fuzz/fuzz.json`).
pub fn profile(bytes: &[u8], env: &Env) -> Result<crate::config::profile::Profile, Error> {
    crate::config::profile::parse(bytes, "fuzz", std::path::Path::new("/fuzz/fuzz.json"), env)
}
