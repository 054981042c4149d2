//! Injected faults: what the next token (or messages) requests get instead of
//! a normal answer.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// Which endpoint a fault applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    /// `POST /v1/oauth/token` (the default).
    #[default]
    Token,
    /// `POST /v1/messages`.
    Messages,
}

/// One kind of misbehaviour. JSON form: `{"kind":"<snake_case name>", …fields}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum FaultKind {
    /// Answer `status` with `body` (a string is sent as is, any other JSON
    /// value is serialised; default: an Anthropic error object for the status)
    /// and extra `headers`.
    Status {
        status: u16,
        #[serde(default)]
        body: Option<Value>,
        #[serde(default)]
        headers: BTreeMap<String, String>,
    },
    /// 429 with `Retry-After: seconds` and a `rate_limit_error` body.
    RetryAfter { seconds: u64 },
    /// Wait `ms`, then answer normally.
    Delay { ms: u64 },
    /// Read the request and never answer (until the client gives up, the
    /// emulator stops, or the optional `ms` elapse, after which the connection
    /// is closed without an answer).
    Hang {
        #[serde(default)]
        ms: Option<u64>,
    },
    /// Send the status line, headers (a `Content-Length` larger than what
    /// follows) and part of a body, then close the connection.
    Reset,
    /// Make the exchange (the identity token's `jti` is consumed, a token is
    /// minted), then answer like `reset`: a server that failed after it had
    /// used the identity token (token endpoint only).
    ResetAfterExchange,
    /// An HTML page instead of JSON (default status 200).
    NonJson {
        #[serde(default)]
        status: Option<u16>,
    },
    /// 200 with a JSON-looking body of `bytes` bytes (default 1 MiB + 1).
    Oversized {
        #[serde(default)]
        bytes: Option<usize>,
    },
    /// A redirect (default 307) to `location` (default: the emulator's own
    /// `/_emulator/redirect-target`, which counts clients that follow it).
    Redirect {
        #[serde(default)]
        status: Option<u16>,
        #[serde(default)]
        location: Option<String>,
    },
    /// A 400 (or `status`) whose body echoes the whole request body, assertion
    /// included, in the RFC 6749 fields (`shape: "oauth"`, default) or in an
    /// Anthropic error message (`shape: "anthropic"`), to prove clients scrub.
    Echo {
        #[serde(default)]
        status: Option<u16>,
        #[serde(default)]
        shape: Option<String>,
    },
    /// Exactly `body` with `status` (default 200), `Content-Type:
    /// application/json` unless `headers` says otherwise.
    Raw {
        #[serde(default)]
        status: Option<u16>,
        body: String,
        #[serde(default)]
        headers: BTreeMap<String, String>,
    },
}

/// A queued fault: a kind, how many consecutive requests it applies to, and
/// to which endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    pub kind: FaultKind,
    pub count: u32,
    pub endpoint: Endpoint,
}

impl Fault {
    /// A fault for the next token request.
    pub fn new(kind: FaultKind) -> Fault {
        Fault { kind, count: 1, endpoint: Endpoint::Token }
    }
    /// Apply to `n` consecutive requests.
    pub fn times(mut self, n: u32) -> Fault {
        self.count = n.max(1);
        self
    }
    /// Apply to `POST /v1/messages` instead of the token endpoint.
    pub fn on_messages(mut self) -> Fault {
        self.endpoint = Endpoint::Messages;
        self
    }
    pub fn status(status: u16) -> Fault {
        Fault::new(FaultKind::Status { status, body: None, headers: BTreeMap::new() })
    }
    pub fn retry_after(seconds: u64) -> Fault {
        Fault::new(FaultKind::RetryAfter { seconds })
    }
    pub fn delay(ms: u64) -> Fault {
        Fault::new(FaultKind::Delay { ms })
    }
    pub fn hang() -> Fault {
        Fault::new(FaultKind::Hang { ms: None })
    }
    pub fn reset() -> Fault {
        Fault::new(FaultKind::Reset)
    }
    pub fn non_json() -> Fault {
        Fault::new(FaultKind::NonJson { status: None })
    }
    pub fn oversized() -> Fault {
        Fault::new(FaultKind::Oversized { bytes: None })
    }
    pub fn redirect(location: Option<&str>) -> Fault {
        Fault::new(FaultKind::Redirect { status: None, location: location.map(str::to_owned) })
    }
    pub fn echo() -> Fault {
        Fault::new(FaultKind::Echo { status: None, shape: None })
    }
    pub fn raw(status: u16, body: &str) -> Fault {
        Fault::new(FaultKind::Raw { status: Some(status), body: body.to_owned(), headers: BTreeMap::new() })
    }

    /// Parse one fault from its JSON form, e.g. `{"kind":"status","status":503,"count":2}`.
    pub fn from_json(v: &Value) -> Result<Fault, String> {
        let Value::Object(map) = v else {
            return Err("each fault must be a JSON object like {\"kind\":\"status\",\"status\":503}".into());
        };
        let mut map = map.clone();
        let count = match map.remove("count") {
            None | Some(Value::Null) => 1,
            Some(c) => match c.as_u64() {
                Some(n) if (1..=u32::MAX as u64).contains(&n) => n as u32,
                _ => return Err("fault \"count\" must be a positive integer".into()),
            },
        };
        let endpoint = match map.remove("endpoint") {
            None | Some(Value::Null) => Endpoint::Token,
            Some(e) => serde_json::from_value(e)
                .map_err(|_| "fault \"endpoint\" must be \"token\" or \"messages\"".to_string())?,
        };
        let kind: FaultKind = serde_json::from_value(Value::Object(map)).map_err(|e| {
            format!(
                "invalid fault: {e} (kinds: status, retry_after, delay, hang, reset, reset_after_exchange, \
                 non_json, oversized, redirect, echo, raw)"
            )
        })?;
        let fault = Fault { kind, count, endpoint };
        fault.check()?;
        Ok(fault)
    }

    /// Parse `{"faults":[…]}`, a bare array, or a single fault object.
    pub fn list_from_json(v: &Value) -> Result<Vec<Fault>, String> {
        let list = match v {
            Value::Object(m) if m.contains_key("faults") => match &m["faults"] {
                Value::Array(a) => a.as_slice(),
                _ => return Err("\"faults\" must be an array of fault objects".into()),
            },
            Value::Array(a) => a.as_slice(),
            Value::Object(_) => std::slice::from_ref(v),
            _ => return Err("expected {\"faults\":[…]}".into()),
        };
        list.iter().enumerate().map(|(i, f)| Fault::from_json(f).map_err(|e| format!("faults[{i}]: {e}"))).collect()
    }

    fn check(&self) -> Result<(), String> {
        let valid = |s: u16| hyper::StatusCode::from_u16(s).is_ok();
        match &self.kind {
            FaultKind::Status { status, headers, .. } | FaultKind::Raw { status: Some(status), headers, .. } => {
                if !valid(*status) {
                    return Err(format!("status {status} is not a valid HTTP status"));
                }
                check_headers(headers)?;
            }
            FaultKind::Raw { status: None, headers, .. } => check_headers(headers)?,
            FaultKind::NonJson { status: Some(s) } | FaultKind::Echo { status: Some(s), .. } if !valid(*s) => {
                return Err(format!("status {s} is not a valid HTTP status"));
            }
            FaultKind::Redirect { status, location } => {
                let s = status.unwrap_or(307);
                if !(300..=399).contains(&s) {
                    return Err(format!("redirect status must be 3xx, got {s}"));
                }
                if let Some(l) = location {
                    if hyper::header::HeaderValue::from_str(l).is_err() {
                        return Err("redirect location is not a valid header value".into());
                    }
                }
            }
            FaultKind::Echo { shape: Some(s), .. } if s != "oauth" && s != "anthropic" => {
                return Err(format!("echo shape must be \"oauth\" or \"anthropic\", got {s:?}"));
            }
            FaultKind::Oversized { bytes: Some(b) } if *b > 64 * 1024 * 1024 => {
                return Err("oversized bytes must be at most 64 MiB".into());
            }
            _ => {}
        }
        Ok(())
    }
}

fn check_headers(h: &BTreeMap<String, String>) -> Result<(), String> {
    for (k, v) in h {
        if hyper::header::HeaderName::from_bytes(k.as_bytes()).is_err() {
            return Err(format!("header name {k:?} is invalid"));
        }
        if hyper::header::HeaderValue::from_str(v).is_err() {
            return Err(format!("header {k:?} has an invalid value"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_all_kinds() {
        let list = Fault::list_from_json(&json!({"faults":[
            {"kind":"status","status":503,"body":{"x":1},"headers":{"x-a":"b"},"count":2},
            {"kind":"retry_after","seconds":1},
            {"kind":"delay","ms":5},
            {"kind":"hang"},
            {"kind":"reset"},
            {"kind":"reset_after_exchange"},
            {"kind":"non_json"},
            {"kind":"oversized"},
            {"kind":"redirect","status":307,"location":"http://example.invalid/"},
            {"kind":"echo"},
            {"kind":"raw","status":200,"body":"{}","endpoint":"messages"}
        ]}))
        .expect("parses");
        assert_eq!(list.len(), 11);
        assert_eq!(list[0].count, 2);
        assert_eq!(list[1].kind, FaultKind::RetryAfter { seconds: 1 });
        assert_eq!(list[5].kind, FaultKind::ResetAfterExchange);
        assert_eq!(list[10].endpoint, Endpoint::Messages);
    }

    #[test]
    fn rejects_bad_faults() {
        for bad in [
            json!({"kind":"nope"}),
            json!({"kind":"status"}),
            json!({"kind":"status","status":42}),
            json!({"kind":"delay","secs":1}),
            json!({"kind":"redirect","status":200}),
            json!({"kind":"reset","count":0}),
            json!({"kind":"echo","shape":"xml"}),
            json!("status"),
        ] {
            assert!(Fault::from_json(&bad).is_err(), "{bad} should be rejected");
        }
        let e = Fault::list_from_json(&json!({"faults":[{"kind":"reset"},{"kind":"nope"}]})).unwrap_err();
        assert!(e.starts_with("faults[1]:"), "{e}");
    }
}
