//! Validation of the ids the exchange sends, so a typo fails before the network.
//!
//! Facts (docs/design.md §1, the official SDKs' docs): federation rules, service
//! accounts and workspaces have tagged ids — a lowercase tag, an underscore and
//! a base62 body (`wrkspc_011CZkZaBF1tNoB5wlCeusgy`, `svac_01SDCCSbTxrXDpWc1phhtcfK`);
//! organizations have no tag, their id is a UUID; `workspace_id` may also be
//! the literal `default`. We check the tag exactly and the body's alphabet and
//! a generous length bound, so wrong prefixes, pasted whitespace or quotes,
//! empty values, a UUID where a tag belongs (and the reverse) and swapped ids
//! are caught, while any id of the documented shape passes. Ids are not
//! secret, so messages echo them — unless the value looks like a token or key
//! someone pasted into the wrong place, which is never echoed.

use super::Origin;
use crate::error::{Error, Result};

/// Longest tagged-id body accepted (real ones are 24 characters).
const MAX_TAG_BODY: usize = 64;

/// The ids the exchange sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
// The variants are the fields' names (`federation_rule_id`, …), `_id` and all.
#[allow(clippy::enum_variant_names)]
pub(crate) enum IdField {
    FederationRuleId,
    OrganizationId,
    ServiceAccountId,
    WorkspaceId,
}

impl IdField {
    /// The snake_case field name (the JSON body key).
    pub fn name(self) -> &'static str {
        match self {
            IdField::FederationRuleId => "federation_rule_id",
            IdField::OrganizationId => "organization_id",
            IdField::ServiceAccountId => "service_account_id",
            IdField::WorkspaceId => "workspace_id",
        }
    }

    /// The key inside a profile file.
    pub(crate) fn profile_key(self) -> &'static str {
        match self {
            IdField::FederationRuleId => "authentication.federation_rule_id",
            IdField::OrganizationId => "organization_id",
            IdField::ServiceAccountId => "authentication.service_account_id",
            IdField::WorkspaceId => "workspace_id",
        }
    }

    /// The environment variable the SDKs read for it.
    pub(crate) fn env_var(self) -> &'static str {
        match self {
            IdField::FederationRuleId => "ANTHROPIC_FEDERATION_RULE_ID",
            IdField::OrganizationId => "ANTHROPIC_ORGANIZATION_ID",
            IdField::ServiceAccountId => "ANTHROPIC_SERVICE_ACCOUNT_ID",
            IdField::WorkspaceId => "ANTHROPIC_WORKSPACE_ID",
        }
    }

    fn tag(self) -> Option<&'static str> {
        match self {
            IdField::FederationRuleId => Some("fdrl_"),
            IdField::OrganizationId => None,
            IdField::ServiceAccountId => Some("svac_"),
            IdField::WorkspaceId => Some("wrkspc_"),
        }
    }

    fn fix(self) -> &'static str {
        match self {
            IdField::FederationRuleId => {
                "use the federation rule's ID (it starts with fdrl_) as shown on the Claude Console's Workload identity page"
            }
            IdField::OrganizationId => {
                "use the organization ID shown in the Claude Console's organization settings: a UUID such as 123e4567-e89b-12d3-a456-426614174000 (organization ids have no tag)"
            }
            IdField::ServiceAccountId => {
                "use the service account's ID (it starts with svac_) as shown in the Claude Console, or leave it unset"
            }
            IdField::WorkspaceId => {
                "use the workspace's ID (it starts with wrkspc_) as shown in the Claude Console, the literal `default` for the default workspace, or leave it unset"
            }
        }
    }
}

/// Known tags, to name the id someone pasted into the wrong field.
const KNOWN_TAGS: &[(&str, &str)] = &[
    ("fdrl_", "a federation rule ID"),
    ("svac_", "a service account ID"),
    ("wrkspc_", "a workspace ID"),
    ("org_", "a tagged organization ID"),
    ("user_", "a user ID"),
    ("apikey_", "an API key ID"),
];

/// `federation_rule_id`: `fdrl_…`.
pub fn federation_rule_id(value: &str, origin: &Origin) -> Result<()> {
    validate(IdField::FederationRuleId, value, origin)
}

/// `organization_id`: a UUID.
pub fn organization_id(value: &str, origin: &Origin) -> Result<()> {
    validate(IdField::OrganizationId, value, origin)
}

/// `service_account_id`: `svac_…`.
pub fn service_account_id(value: &str, origin: &Origin) -> Result<()> {
    validate(IdField::ServiceAccountId, value, origin)
}

/// `workspace_id`: `wrkspc_…` or the literal `default`.
pub fn workspace_id(value: &str, origin: &Origin) -> Result<()> {
    validate(IdField::WorkspaceId, value, origin)
}

/// Validate `value` as `field`; the error names the field, its origin and the fix.
pub(crate) fn validate(field: IdField, value: &str, origin: &Origin) -> Result<()> {
    match problem(field, value) {
        None => Ok(()),
        Some(problem) => Err(Error::config(format!("{} {problem}: {}", describe_field(field, origin), field.fix()))),
    }
}

/// `organization_id from environment variable ANTHROPIC_ORGANIZATION_ID`,
/// `federation_rule_id from profile file /…/ci.json (authentication.federation_rule_id)`.
pub(crate) fn describe_field(field: IdField, origin: &Origin) -> String {
    match origin {
        Origin::ProfileFile(_) => format!("{} from {origin} ({})", field.name(), field.profile_key()),
        Origin::Default => format!("{} (default)", field.name()),
        _ => format!("{} from {origin}", field.name()),
    }
}

/// True for the canonical 8-4-4-4-12 hexadecimal UUID form (any case).
pub(crate) fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 36 {
        return false;
    }
    b.iter().enumerate().all(|(i, &c)| match i {
        8 | 13 | 18 | 23 => c == b'-',
        _ => c.is_ascii_hexdigit(),
    })
}

pub(crate) use crate::error::looks_secret;

/// The value quoted for a message, or a note that it is withheld.
fn shown(value: &str) -> String {
    if looks_secret(value) {
        "value not shown: it looks like a token or key, not an id".to_string()
    } else {
        format!("got {value:?}")
    }
}

fn problem(field: IdField, value: &str) -> Option<String> {
    if value.is_empty() {
        return Some("is empty".to_string());
    }
    if value.trim().is_empty() {
        return Some(format!("is blank ({})", shown(value)));
    }
    if value.trim() != value {
        return Some(format!("has leading or trailing whitespace ({}); remove it", shown(value)));
    }
    if looks_secret(value) {
        return Some(format!("is not a {} ({})", expected(field), shown(value)));
    }
    if let Some(c) = value.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Some(format!("contains whitespace or a control character {c:?} ({})", shown(value)));
    }
    if value.starts_with(['"', '\'']) || value.ends_with(['"', '\'']) {
        return Some(format!("is wrapped in quotes ({}); remove the quotes", shown(value)));
    }
    match field.tag() {
        None => uuid_problem(value),
        Some(tag) => {
            if field == IdField::WorkspaceId && value == "default" {
                return None;
            }
            tagged_problem(field, tag, value)
        }
    }
}

fn expected(field: IdField) -> String {
    match field.tag() {
        None => "UUID".to_string(),
        Some(tag) if field == IdField::WorkspaceId => format!("{tag}… tagged ID or `default`"),
        Some(tag) => format!("{tag}… tagged ID"),
    }
}

fn uuid_problem(value: &str) -> Option<String> {
    if is_uuid(value) {
        return None;
    }
    let got = shown(value);
    if let Some((_, what)) = KNOWN_TAGS.iter().find(|(tag, _)| value.starts_with(tag)) {
        return Some(format!("is not a UUID ({got}; this looks like {what})"));
    }
    let hex32 = value.len() == 32 && value.bytes().all(|c| c.is_ascii_hexdigit());
    if hex32 {
        return Some(format!("is not a UUID in the 8-4-4-4-12 form with hyphens ({got})"));
    }
    let braced = value.strip_prefix('{').and_then(|v| v.strip_suffix('}'));
    if braced.is_some_and(is_uuid) {
        return Some(format!("is a UUID in braces ({got}); remove the braces"));
    }
    let hexish = value.bytes().all(|c| c.is_ascii_hexdigit() || c == b'-');
    if hexish && value.len() > 8 {
        return Some(format!("is not a well-formed UUID ({got}; expected 36 characters like 123e4567-e89b-12d3-a456-426614174000, got {} characters)", value.len()));
    }
    Some(format!("is not a UUID ({got})"))
}

fn tagged_problem(field: IdField, tag: &str, value: &str) -> Option<String> {
    let got = shown(value);
    let want = expected(field);
    let Some(body) = value.strip_prefix(tag) else {
        if is_uuid(value) {
            let hint = if field == IdField::WorkspaceId
                || field == IdField::ServiceAccountId
                || field == IdField::FederationRuleId
            {
                " (a UUID looks like an organization ID; did you swap the values?)"
            } else {
                ""
            };
            return Some(format!("is a UUID, not a {want} ({got}){hint}"));
        }
        if value.to_ascii_lowercase().starts_with(tag) {
            return Some(format!("has the tag in the wrong case ({got}); the tag is lowercase `{tag}`"));
        }
        if field == IdField::WorkspaceId && value.eq_ignore_ascii_case("default") {
            return Some(format!("is not a {want} ({got}); the literal is lowercase `default`"));
        }
        if let Some((other, what)) = KNOWN_TAGS.iter().find(|(t, _)| value.starts_with(t)) {
            return Some(format!(
                "starts with `{other}`, so it is {what}, not a {want} ({got}); did you swap the values?"
            ));
        }
        let bare = tag.trim_end_matches('_');
        if value.starts_with(bare) || value.starts_with(&format!("{bare}-")) {
            return Some(format!("does not start with `{tag}` ({got}); the tag ends with an underscore"));
        }
        return Some(format!("does not start with `{tag}` ({got})"));
    };
    if body.is_empty() {
        return Some(format!("is only the tag `{tag}` with nothing after it"));
    }
    if let Some(c) = body.chars().find(|c| !c.is_ascii_alphanumeric()) {
        return Some(format!("is not a well-formed {want} ({got}): the part after `{tag}` may contain only letters and digits, found {c:?}"));
    }
    if body.len() > MAX_TAG_BODY {
        return Some(format!(
            "is not a well-formed {want}: the part after `{tag}` is {} characters long (real ids have about 24)",
            body.len()
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn env(var: &str) -> Origin {
        Origin::EnvVar(var.to_string())
    }

    fn err(r: Result<()>) -> String {
        let e = r.expect_err("expected an error");
        assert_eq!(e.kind, crate::ErrorKind::Config);
        e.message().to_string()
    }

    const UUID: &str = "123e4567-e89b-12d3-a456-426614174000";

    #[test]
    fn valid_ids_pass() {
        let o = env("X");
        federation_rule_id("fdrl_011CZkZaBF1tNoB5wlCeusgy", &o).unwrap();
        federation_rule_id("fdrl_1", &o).unwrap();
        organization_id(UUID, &o).unwrap();
        organization_id(&UUID.to_uppercase(), &o).unwrap();
        service_account_id("svac_01SDCCSbTxrXDpWc1phhtcfK", &o).unwrap();
        workspace_id("wrkspc_011CZkZaBF1tNoB5wlCeusgy", &o).unwrap();
        workspace_id("default", &o).unwrap();
    }

    #[test]
    fn org_error_names_field_origin_value_and_fix() {
        let m = err(organization_id("org_123", &env("ANTHROPIC_ORGANIZATION_ID")));
        assert!(
            m.starts_with(
                "organization_id from environment variable ANTHROPIC_ORGANIZATION_ID is not a UUID (got \"org_123\""
            ),
            "{m}"
        );
        assert!(m.contains("Console"), "{m}");
        assert!(m.contains("tagged organization ID"), "{m}");
    }

    #[test]
    fn profile_origin_names_the_key_and_path() {
        let o = Origin::ProfileFile(PathBuf::from("/cfg/configs/ci.json"));
        let m = err(federation_rule_id("rule_1", &o));
        assert!(
            m.contains("federation_rule_id from profile file /cfg/configs/ci.json (authentication.federation_rule_id)"),
            "{m}"
        );
        assert!(m.contains("fdrl_"), "{m}");
        let m = err(workspace_id("ws", &Origin::Explicit("--workspace-id".into())));
        assert!(m.starts_with("workspace_id from --workspace-id "), "{m}");
    }

    #[test]
    fn typos_are_caught() {
        let o = env("X");
        // wrong prefixes and swapped ids
        assert!(err(federation_rule_id("svac_01SDCCSbTxrXDpWc1phhtcfK", &o)).contains("service account ID"));
        assert!(err(service_account_id("fdrl_01SDCCSbTxrXDpWc1phhtcfK", &o)).contains("federation rule ID"));
        assert!(err(workspace_id("fdrl_01", &o)).contains("swap"));
        assert!(err(federation_rule_id("FDRL_01abc", &o)).contains("wrong case"));
        assert!(err(federation_rule_id("fdrl01abc", &o)).contains("underscore"));
        assert!(err(federation_rule_id("fdrl-01abc", &o)).contains("underscore"));
        assert!(err(workspace_id("Default", &o)).contains("lowercase `default`"));
        // whitespace, empty, quotes
        assert!(err(federation_rule_id(" fdrl_01abc", &o)).contains("whitespace"));
        assert!(err(federation_rule_id("fdrl_01abc\n", &o)).contains("whitespace"));
        assert!(err(organization_id(&format!("{UUID} "), &o)).contains("whitespace"));
        assert!(err(federation_rule_id("fdrl_01 abc", &o)).contains("whitespace"));
        assert!(err(federation_rule_id("", &o)).contains("is empty"));
        assert!(err(federation_rule_id("   ", &o)).contains("blank"));
        assert!(err(federation_rule_id("\"fdrl_01abc\"", &o)).contains("quotes"));
        assert!(err(federation_rule_id("fdrl_", &o)).contains("only the tag"));
        assert!(err(federation_rule_id("fdrl_01abc-", &o)).contains("only letters and digits"));
        assert!(err(federation_rule_id(&format!("fdrl_{}", "a".repeat(65)), &o)).contains("characters long"));
        // UUID where a tag belongs, and the reverse
        assert!(err(federation_rule_id(UUID, &o)).contains("is a UUID"));
        assert!(err(workspace_id(UUID, &o)).contains("organization ID"));
        assert!(err(service_account_id(&format!("svac_{UUID}"), &o)).contains("only letters and digits"));
        assert!(err(organization_id("fdrl_01abc", &o)).contains("federation rule ID"));
        assert!(err(organization_id(&UUID.replace('-', ""), &o)).contains("hyphens"));
        assert!(err(organization_id(&format!("{{{UUID}}}"), &o)).contains("braces"));
        assert!(err(organization_id(&UUID[..35], &o)).contains("36 characters"));
        assert!(err(organization_id("123e4567-e89b-12d3-a456-42661417400g", &o)).contains("is not a UUID"));
    }

    #[test]
    fn secrets_are_never_echoed() {
        let o = env("ANTHROPIC_FEDERATION_RULE_ID");
        let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl";
        for v in [jwt, "sk-ant-api03-abcdefghijklmnop", "sk-ant-oat01-zzzzzz"] {
            for f in
                [IdField::FederationRuleId, IdField::OrganizationId, IdField::ServiceAccountId, IdField::WorkspaceId]
            {
                let m = err(validate(f, v, &o));
                assert!(!m.contains(v), "{m}");
                assert!(!m.contains("sk-ant-") && !m.contains("eyJ"), "{m}");
                assert!(m.contains("not shown"), "{m}");
            }
        }
        // whitespace around a secret: still withheld
        let m = err(federation_rule_id(&format!(" {jwt}"), &o));
        assert!(!m.contains("eyJ"), "{m}");
    }

    #[test]
    fn uuid_shape() {
        assert!(is_uuid(UUID));
        assert!(!is_uuid(&UUID.replace('-', "_")));
        assert!(!is_uuid(""));
        assert!(!is_uuid("123e4567-e89b-12d3-a456-4266141740000"));
    }
}
