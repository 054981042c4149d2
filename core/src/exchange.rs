//! The RFC 7523 jwt-bearer exchange (SPEC §1): `POST {base_url}/v1/oauth/token`.

use std::time::Duration;

use crate::error::Result;
use crate::secret::Secret;

pub const BETA_OAUTH: &str = "oauth-2025-04-20";
pub const BETA_FEDERATION: &str = "oidc-federation-2026-04-01";
pub const GRANT_TYPE_JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// Assertions longer than this are refused before sending.
pub const MAX_ASSERTION_BYTES: usize = 16 * 1024;
/// Responses longer than this are an error, not a truncation.
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// Everything the exchange sends besides the assertion. Ids are validated.
#[derive(Clone, Debug)]
pub struct ExchangeParams {
    pub base_url: String,
    pub federation_rule_id: String,
    pub organization_id: String,
    pub service_account_id: Option<String>,
    pub workspace_id: Option<String>,
    /// e.g. `anthropic-wif/0.1.0 (cli)`.
    pub user_agent: String,
}

/// A successful token response.
#[derive(Debug)]
pub struct TokenResponse {
    pub access_token: Secret,
    pub expires_in: i64,
    /// `now + expires_in`, unix seconds.
    pub expires_at: i64,
    pub scope: Option<String>,
    pub request_id: Option<String>,
}

/// Retry policy for connection errors, time-outs, 5xx and 429.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    /// Upper bound on the whole sequence, sleeps included.
    pub max_total: Duration,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            max_total: Duration::from_secs(20),
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(8),
        }
    }
}

/// `https://` only, except `http://localhost`, `http://127.0.0.1`,
/// `http://[::1]` (any port). Checked before any I/O.
pub fn check_base_url(url: &str) -> Result<()> {
    let _ = url;
    Err(crate::Error::internal("exchange::check_base_url is not built yet"))
}

/// Exchange, retrying transient failures; `get_assertion` is called before
/// every attempt, because the server accepts each JWT only once.
pub async fn exchange_with_retry<F, Fut>(params: &ExchangeParams, policy: &RetryPolicy, get_assertion: F) -> Result<TokenResponse>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Secret>>,
{
    let _ = (params, policy, get_assertion);
    Err(crate::Error::internal("exchange::exchange_with_retry is not built yet"))
}
