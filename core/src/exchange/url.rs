//! Base-URL policy (SPEC §1): `https://` only, plus plain `http://` to the
//! loopback names used for local testing. Checked before any I/O, so an
//! identity token is never sent anywhere else.

use reqwest::Url;

use crate::error::{redact_url, Error, Result};

/// The token endpoint's path under the base URL.
pub const TOKEN_PATH: &str = "/v1/oauth/token";

const FIX: &str = "use an https:// URL such as https://api.anthropic.com \
     (plain http:// is allowed only for http://localhost, http://127.0.0.1 and http://[::1], any port)";

/// `https://` only, except `http://localhost`, `http://127.0.0.1`,
/// `http://[::1]` (any port). No credentials, query or fragment.
pub fn check_base_url(url: &str) -> Result<()> {
    parse_base_url(url).map(|_| ())
}

/// `{base_url}/v1/oauth/token`, after [`check_base_url`]. A trailing slash
/// and a base path (`https://host/prefix`) are handled.
pub fn token_endpoint(base_url: &str) -> Result<String> {
    let url = parse_base_url(base_url)?;
    let base = url.as_str().trim_end_matches('/');
    Ok(format!("{base}{TOKEN_PATH}"))
}

fn parse_base_url(raw: &str) -> Result<Url> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err(Error::config(format!("the base URL is empty; {FIX}")));
    }
    let url = Url::parse(trimmed)
        .map_err(|e| Error::config(format!("the base URL \"{}\" is not a valid URL ({e}); {FIX}", redact_url(raw))))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Error::config(format!(
            "the base URL \"{}\" carries credentials (user:password@); remove them (e.g. https://api.anthropic.com): \
             the token exchange authenticates with the identity token, never with credentials in the URL",
            redact_url(raw)
        )));
    }
    if url.query().is_some() {
        return Err(Error::config(format!(
            "the base URL \"{}\" has a query string; remove it (the base URL is a scheme, host, port and \
             optional path, e.g. https://api.anthropic.com)",
            redact_url(raw)
        )));
    }
    if url.fragment().is_some() {
        return Err(Error::config(format!(
            "the base URL \"{}\" has a #fragment; remove it (e.g. https://api.anthropic.com)",
            redact_url(raw)
        )));
    }
    match url.scheme() {
        "https" => {
            if url.host().is_none() {
                return Err(Error::config(format!("the base URL \"{}\" has no host; {FIX}", redact_url(raw))));
            }
            Ok(url)
        }
        "http" => {
            if is_loopback_name(&url) {
                Ok(url)
            } else {
                Err(Error::config(format!(
                    "refusing the base URL \"{}\": plain http:// would send the identity token unencrypted; {FIX}",
                    redact_url(raw)
                )))
            }
        }
        other => {
            Err(Error::config(format!("the base URL \"{}\" uses the scheme \"{other}:\"; {FIX}", redact_url(raw))))
        }
    }
}

/// Exactly `localhost`, `127.0.0.1` or `::1` (the URL parser normalises case
/// and numeric forms; `localhost.evil.com` or `127.0.0.1.nip.io` stay domains).
fn is_loopback_name(url: &Url) -> bool {
    matches!(url.host_str(), Some("localhost") | Some("127.0.0.1") | Some("[::1]"))
}
