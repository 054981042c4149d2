//! Property tests (issue 7, item 5) over the parsers that take untrusted
//! input: the profile parser, the token-response parser, the JWT decoder
//! (doctor) and the `${VAR}` expander. They run in `cargo test` (256 cases
//! each by default; `PROPTEST_CASES=20000` for a longer run, see
//! scripts/fuzz.sh). The cargo-fuzz targets in fuzz/ cover the same entry
//! points with coverage guidance.

use proptest::prelude::*;
use serde_json::{json, Value};

use crate::env::Env;
use crate::fuzz_api;

const CANARY: &str = "sk-ant-oat01-PROPCANARY0123456789";
const JWT: &str = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJwcm9wY2FuYXJ5In0.c2lnbmF0dXJlLXByb3BjYW5hcnk";

/// Arbitrary JSON, with the canaries among the leaves.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        ".{0,40}".prop_map(Value::from),
        Just(Value::from(CANARY)),
        Just(Value::from(JWT)),
        Just(Value::from("fdrl_01AbCdEfGhJkMnPqRsTvWxYz00")),
        Just(Value::from("00000000-0000-4000-8000-000000000001")),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map(
                prop_oneof![
                    Just("version".to_string()),
                    Just("organization_id".to_string()),
                    Just("workspace_id".to_string()),
                    Just("base_url".to_string()),
                    Just("authentication".to_string()),
                    Just("type".to_string()),
                    Just("federation_rule_id".to_string()),
                    Just("service_account_id".to_string()),
                    Just("identity_token".to_string()),
                    Just("source".to_string()),
                    Just("path".to_string()),
                    Just("command".to_string()),
                    Just("url".to_string()),
                    Just("credentials_path".to_string()),
                    "[a-z_]{1,12}",
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Profiles shaped like real ones, with arbitrary values in every slot.
fn profile_like() -> impl Strategy<Value = Value> {
    (json_value(), json_value(), json_value(), json_value(), json_value(), json_value()).prop_map(
        |(org, ws, base, rule, idt, extra)| {
            json!({"version": "1.0", "organization_id": org, "workspace_id": ws, "base_url": base,
                   "authentication": {"type": "oidc_federation", "federation_rule_id": rule,
                                      "identity_token": idt, "x": extra}})
        },
    )
}

fn no_secret(text: &str) -> bool {
    !text.contains(CANARY) && !text.contains("PROPCANARY") && !text.contains(JWT)
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn profile_parser_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = fuzz_api::profile(&bytes, &Env::fixed::<[(&str, &str); 0], &str, &str>([]));
    }

    #[test]
    fn profile_parser_errors_are_config_and_secret_free(v in prop_oneof![json_value(), profile_like()]) {
        let bytes = serde_json::to_vec(&v).unwrap();
        match fuzz_api::profile(&bytes, &Env::fixed([("ANTHROPIC_ORGANIZATION_ID", CANARY)])) {
            Ok(_) => {}
            Err(e) => {
                prop_assert_eq!(e.kind, crate::ErrorKind::Config);
                prop_assert!(no_secret(e.message()), "{}", e.message());
                prop_assert!(e.message().contains("fuzz.json"), "names the file: {}", e.message());
            }
        }
    }

    #[test]
    fn token_response_parser_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = fuzz_api::token_response(&bytes, JWT);
        let _ = fuzz_api::error_body(&bytes, Some("text/plain"), JWT);
    }

    #[test]
    fn token_responses_are_judged_safely(
        token in prop_oneof![Just(Value::from(CANARY)), json_value()],
        token_type in prop_oneof![Just(Value::from("Bearer")), Just(Value::from("bearer")), json_value()],
        expires_in in prop_oneof![any::<i64>().prop_map(Value::from), any::<f64>().prop_map(|f| json!(f)), json_value(), ".{0,12}".prop_map(Value::from)],
        extra in json_value(),
        omit in 0u8..8,
    ) {
        let mut obj = serde_json::Map::new();
        if omit & 1 == 0 { obj.insert("access_token".into(), token.clone()); }
        if omit & 2 == 0 { obj.insert("token_type".into(), token_type); }
        if omit & 4 == 0 { obj.insert("expires_in".into(), expires_in); }
        obj.insert("scope".into(), extra);
        let body = serde_json::to_vec(&Value::Object(obj)).unwrap();
        match fuzz_api::token_response(&body, JWT) {
            Ok((t, secs)) => {
                prop_assert!(!t.is_empty());
                prop_assert!(t.expose().bytes().all(|b| (0x21..=0x7e).contains(&b)));
                prop_assert!((1..=crate::exchange::response::MAX_EXPIRES_IN).contains(&secs));
            }
            Err(why) => prop_assert!(no_secret(&why), "{}", why),
        }
        // Error bodies that echo the assertion and tokens are scrubbed.
        let summary = fuzz_api::error_body(&body, Some("application/json"), JWT);
        prop_assert!(no_secret(&summary), "{}", summary);
    }

    #[test]
    fn jwt_decoder_never_panics(s in ".{0,300}", parts in prop::collection::vec("[A-Za-z0-9_=-]{0,40}", 0..5)) {
        let _ = crate::jwt::decode_unverified(&s);
        let joined = parts.join(".");
        if let Err(e) = crate::jwt::decode_unverified(&joined) {
            prop_assert!(!e.contains(&joined) || joined.len() < 4, "the error quotes the token: {}", e);
        }
    }

    #[test]
    fn jwt_decoder_reads_what_was_encoded(sub in "[ -~]{0,40}", exp in 0i64..4_000_000_000, jti in "[A-Za-z0-9]{1,20}") {
        use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
        let claims = URL_SAFE_NO_PAD.encode(json!({"sub": sub, "exp": exp, "jti": jti}).to_string());
        let token = format!("{header}.{claims}.c2ln");
        let d = crate::jwt::decode_unverified(&token).unwrap();
        prop_assert_eq!(d.sub(), Some(sub.as_str()));
        prop_assert_eq!(d.exp(), Some(exp));
        prop_assert_eq!(d.jti(), Some(jti.as_str()));
    }

    #[test]
    fn expander_is_total_and_secret_free(template in "[a-z/:$\\{\\}A-Z_0-9.?=&]{0,60}") {
        let env = Env::fixed([("SECRET_VAR", "s3cr3t-expanded-value"), ("HOST", "127.0.0.1")]);
        match fuzz_api::expand(&template, &env) {
            Ok((text, values)) => {
                if !template.contains('$') {
                    prop_assert_eq!(&text, &template);
                }
                let n = template.matches("${SECRET_VAR}").count() + template.matches("${HOST}").count();
                prop_assert!(values.len() <= n);
            }
            Err(e) => prop_assert!(!e.message().contains("s3cr3t-expanded-value"), "{}", e.message()),
        }
    }

    #[test]
    fn expander_substitutes_set_variables(prefix in "[a-z/:.]{0,10}", suffix in "[a-z/:.]{0,10}") {
        let env = Env::fixed([("V", "value-1")]);
        let (text, values) = fuzz_api::expand(&format!("{prefix}${{V}}{suffix}"), &env).unwrap();
        prop_assert_eq!(text, format!("{prefix}value-1{suffix}"));
        prop_assert_eq!(values.len(), 1);
    }
}
