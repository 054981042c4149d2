//! The options table (docs/design.md §11): every option of every face, with
//! its spelling per face (snake_case, camelCase, `--flag`), its kind, bounds
//! and help, and [`FieldNames`], which names an option the way a face's user
//! wrote it. Plain data at the bottom of core, so the precedence chain
//! (`config`) can name options in its messages; parsing values into the
//! engine's options is [`crate::options`]'s.

use serde_json::Value;

/// What an option's value is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Kind {
    /// Text: an id, a name, a URL. `""` is passed on.
    Text,
    /// A file or directory path; `""` is refused.
    Path,
    /// An identity-token source: the profile's `identity_token` object (on the
    /// command line, its JSON text).
    Source,
    /// `true` or `false` (on the command line, a flag without a value).
    Switch,
    /// A number of seconds from 0 to `max`; `whole`: an integer.
    Seconds {
        /// The largest value accepted.
        max: u32,
        /// Whether only integers are accepted.
        whole: bool,
    },
    /// Environment variables: an object of strings (`null` values are left out).
    Vars,
}

/// Which call takes an option.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// The provider (and doctor, which diagnoses a provider's configuration).
    Provider,
    /// Doctor only.
    Doctor,
}

/// One option, with its spelling in every face.
#[derive(Debug)]
pub struct OptionDef {
    /// snake_case: the Python keyword argument, the key in core's JSON.
    pub name: &'static str,
    /// The Node option.
    pub camel: &'static str,
    /// The CLI flag (without `--`); `None` when the CLI has no such flag
    /// (`env`: a command's environment is its process's, set it with env(1)).
    pub flag: Option<&'static str>,
    /// What values it takes.
    pub kind: Kind,
    /// Which call takes it.
    pub scope: Scope,
    /// The CLI's `--help` heading (`None`: the main list).
    pub heading: Option<&'static str>,
    /// The CLI's value name.
    pub value_name: &'static str,
    /// What it is (the CLI's `--help` line).
    pub help: &'static str,
}

/// The `min_remaining` bound: the longest token lifetime a federation rule
/// can grant (86 400 s).
pub(crate) const MAX_MIN_REMAINING: u32 = 86_400;
/// The `lock_timeout` bound (an hour).
pub(crate) const MAX_LOCK_TIMEOUT: u32 = 3_600;
/// The `rotation_wait` bound (ten minutes).
pub(crate) const MAX_ROTATION_WAIT: u32 = 600;

const IDENTITY_HEADING: &str = "Identity token source (one of)";
const CACHING_HEADING: &str = "Caching";

const fn opt(
    name: &'static str,
    camel: &'static str,
    flag: Option<&'static str>,
    kind: Kind,
    value_name: &'static str,
    help: &'static str,
) -> OptionDef {
    OptionDef { name, camel, flag, kind, scope: Scope::Provider, heading: None, value_name, help }
}

/// Every option of every face: the one table.
pub static OPTIONS: &[OptionDef] = &[
    opt("profile", "profile", Some("profile"), Kind::Text, "NAME",
        "Profile name (<config_dir>/configs/<name>.json); the settings below override its fields."),
    opt("federation_rule_id", "federationRuleId", Some("federation-rule-id"), Kind::Text, "ID",
        "Federation rule id (fdrl_…)."),
    opt("organization_id", "organizationId", Some("organization-id"), Kind::Text, "UUID",
        "Organization id (a UUID)."),
    opt("service_account_id", "serviceAccountId", Some("service-account-id"), Kind::Text, "ID",
        "Service account id (svac_…); sent only when set (\"\" leaves it out)."),
    opt("workspace_id", "workspaceId", Some("workspace-id"), Kind::Text, "ID",
        "Workspace id (wrkspc_… or `default`); required when the rule spans several workspaces (\"\" leaves it out)."),
    opt("base_url", "baseURL", Some("base-url"), Kind::Text, "URL",
        "API base URL (https://, or http:// on localhost for testing)."),
    opt("config_dir", "configDir", Some("config-dir"), Kind::Path, "DIR",
        "Config dir (default $ANTHROPIC_CONFIG_DIR, $XDG_CONFIG_HOME/anthropic, ~/.config/anthropic)."),
    opt("credentials_path", "credentialsPath", Some("credentials-path"), Kind::Path, "PATH",
        "On-disk token cache file to use instead of the default."),
    OptionDef {
        heading: Some(IDENTITY_HEADING),
        ..opt("identity_token", "identityToken", Some("identity-token"), Kind::Source, "JSON",
            "Identity token source as JSON, in the profile's `identity_token` shape, e.g. \
             '{\"source\":\"command\",\"command\":[\"gcloud\",\"auth\",\"print-identity-token\"]}'.")
    },
    OptionDef {
        heading: Some(CACHING_HEADING),
        ..opt("no_cache", "noCache", Some("no-cache"), Kind::Switch, "",
            "Do not read or write the on-disk token cache (nor take its lock); the record of presented identity \
             tokens is still kept.")
    },
    OptionDef {
        heading: Some(CACHING_HEADING),
        ..opt("min_remaining", "minRemaining", Some("min-remaining"),
            Kind::Seconds { max: MAX_MIN_REMAINING, whole: true }, "SECONDS",
            "Hand out only tokens with at least this many seconds left, 0 to 86400 \
             (default: min(300, half the lifetime)).")
    },
    OptionDef {
        heading: Some(CACHING_HEADING),
        ..opt("lock_timeout", "lockTimeout", Some("lock-timeout"),
            Kind::Seconds { max: MAX_LOCK_TIMEOUT, whole: false }, "SECONDS",
            "Wait at most this long (0 to 3600 s, default 60) for another process exchanging for the same cache file.")
    },
    OptionDef {
        heading: Some(CACHING_HEADING),
        ..opt("rotation_wait", "rotationWait", Some("rotation-wait"),
            Kind::Seconds { max: MAX_ROTATION_WAIT, whole: false }, "SECONDS",
            "When the identity token was already exchanged on this machine and no cached access token is usable: \
             how long to wait for the token file to be rotated (or ask a minting source again) before failing \
             (0 to 600 s, default 60).")
    },
    opt("env", "env", None, Kind::Vars, "",
        "The environment to resolve from and for identity sources to read, instead of the caller's."),
    OptionDef {
        scope: Scope::Doctor,
        ..opt("exchange", "exchange", Some("exchange"), Kind::Switch, "",
            "Also make one real exchange (consumes the identity token; caches the access token).")
    },
    OptionDef {
        scope: Scope::Doctor,
        ..opt("expected_audience", "expectedAudience", Some("expected-audience"), Kind::Text, "AUD",
            "The audience your federation rule expects (default: the preset's audience, else https://api.anthropic.com).")
    },
];

/// The row of `name` (snake_case).
pub(crate) fn def(name: &str) -> Option<&'static OptionDef> {
    OPTIONS.iter().find(|d| d.name == name)
}

/// How a face names its options in messages (and which face it is).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum FieldNames {
    /// `--federation-rule-id`
    #[default]
    Flags,
    /// `federation_rule_id=`
    SnakeCase,
    /// `federationRuleId`
    CamelCase,
}

impl FieldNames {
    /// The bare spelling of an option in this face: `--federation-rule-id`,
    /// `federation_rule_id`, `federationRuleId`.
    pub fn key(self, d: &OptionDef) -> String {
        match self {
            FieldNames::Flags => format!("--{}", d.flag.unwrap_or(d.name)),
            FieldNames::SnakeCase => d.name.to_string(),
            FieldNames::CamelCase => d.camel.to_string(),
        }
    }

    /// How a message names an option: `--federation-rule-id`, `argument
    /// federation_rule_id`, `option federationRuleId`. `snake` may be a name
    /// outside the table (it is spelled by the face's convention).
    pub fn name(self, snake: &str) -> String {
        let bare = match def(snake) {
            Some(d) => self.key(d),
            None => match self {
                FieldNames::Flags => format!("--{}", snake.replace('_', "-")),
                FieldNames::SnakeCase => snake.to_string(),
                FieldNames::CamelCase => camel_case(snake),
            },
        };
        match self {
            FieldNames::Flags => bare,
            FieldNames::SnakeCase => format!("argument {bare}"),
            FieldNames::CamelCase => format!("option {bare}"),
        }
    }

    /// "option" or "argument": what this face calls its settings.
    pub(crate) fn noun(self) -> &'static str {
        match self {
            FieldNames::SnakeCase => "argument",
            FieldNames::Flags | FieldNames::CamelCase => "option",
        }
    }

    /// How this face's user writes a value's type.
    pub(crate) fn type_name(self, v: &Value) -> &'static str {
        match (self, v) {
            (FieldNames::SnakeCase, Value::Null) => "None",
            (FieldNames::SnakeCase, Value::Bool(_)) => "a bool",
            (FieldNames::SnakeCase, Value::Number(n)) if n.is_f64() => "a float",
            (FieldNames::SnakeCase, Value::Number(_)) => "an int",
            (FieldNames::SnakeCase, Value::String(_)) => "a str",
            (FieldNames::SnakeCase, Value::Array(_)) => "a list",
            (FieldNames::SnakeCase, Value::Object(_)) => "a dict",
            _ => crate::json::type_name(v),
        }
    }

    /// What a value of `kind` must be, in this face's words.
    pub(crate) fn expected(self, kind: Kind) -> String {
        match (kind, self) {
            (Kind::Text, _) => "a string".into(),
            (Kind::Path, _) => "a string (a path)".into(),
            (Kind::Source, FieldNames::SnakeCase) => "an identity-token source: anthropic_wif.sources.File(path) \
                (or {'source': 'file', 'path': …}) for a token file, anthropic_wif.sources.Env('VAR') for a \
                variable holding the token, or another source object or dict"
                .into(),
            (Kind::Source, FieldNames::CamelCase) => {
                "an identity-token source object like { source: 'file', path: '/var/run/secrets/anthropic.com/token' }"
                    .into()
            }
            (Kind::Source, FieldNames::Flags) => "an identity-token source as JSON".into(),
            (Kind::Switch, FieldNames::SnakeCase) => "True or False".into(),
            (Kind::Switch, _) => "true or false".into(),
            (Kind::Seconds { max, whole: true }, _) => format!("a whole number of seconds from 0 to {max}"),
            (Kind::Seconds { max, whole: false }, _) => format!("a number of seconds from 0 to {max}"),
            (Kind::Vars, FieldNames::SnakeCase) => "a mapping of variable names to str values".into(),
            (Kind::Vars, _) => "an object of strings (e.g. { ...process.env })".into(),
        }
    }

    /// A value as this face's user would write it, for a description.
    pub fn render(self, v: &Value) -> String {
        match v {
            Value::String(s) => {
                let mut out = String::from("'");
                for c in s.chars() {
                    match c {
                        '\'' | '\\' => {
                            out.push('\\');
                            out.push(c);
                        }
                        c if c.is_control() => out.extend(c.escape_default()),
                        c => out.push(c),
                    }
                }
                out.push('\'');
                out
            }
            Value::Bool(b) if self == FieldNames::SnakeCase => if *b { "True" } else { "False" }.into(),
            other => other.to_string(),
        }
    }
}

fn camel_case(snake: &str) -> String {
    let mut out = String::new();
    let mut up = false;
    for c in snake.chars() {
        if c == '_' {
            up = true;
        } else if up {
            out.extend(c.to_uppercase());
            up = false;
        } else {
            out.push(c);
        }
    }
    out
}
