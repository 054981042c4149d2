//! `{"source": "env", "var": …}`: the identity JWT itself in an environment
//! variable (the SDKs' `ANTHROPIC_IDENTITY_TOKEN`; CI systems such as GitLab
//! `id_tokens`, CircleCI `CIRCLE_OIDC_TOKEN_V2`, Bitbucket
//! `BITBUCKET_STEP_OIDC_TOKEN`, HCP Terraform `TFC_WORKLOAD_IDENTITY_TOKEN`).

use super::finish;
use crate::env::Env;
use crate::error::{Error, Result};
use crate::secret::Secret;

pub(crate) fn read(var: &str, env: &Env, source: &str) -> Result<Secret> {
    read_with_fix(var, env, source, None)
}

/// Like [`read`], with a source-specific fix for the unset case (presets).
pub(crate) fn read_with_fix(var: &str, env: &Env, source: &str, fix: Option<&str>) -> Result<Secret> {
    if let Some(problem) = super::parse::env_var_problem(var) {
        return Err(Error::config(format!("{source}: {problem}")));
    }
    match env.get(var) {
        Some(value) => finish(value, source),
        None => {
            let fix = fix.map(str::to_string).unwrap_or_else(|| {
                format!("export {var} with the identity JWT from your identity provider, or configure a different identity token source")
            });
            Err(Error::identity(format!("{source}: the environment variable {var} is not set (or is empty); {fix}")))
        }
    }
}
