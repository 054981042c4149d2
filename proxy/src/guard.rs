//! Who may use the proxy: programs on this machine, not web pages.
//!
//! A browser will send requests to a loopback proxy on behalf of any page it
//! shows. Three shapes reach it, and each is refused with 403 before anything
//! goes upstream (no exchange, no forwarded request):
//!
//! - **DNS rebinding**: a page from `attacker.example:PORT` whose name now
//!   resolves to 127.0.0.1 makes same-origin requests, so the browser sends
//!   `Host: attacker.example:PORT` and no `Origin`. Only the names the proxy
//!   is reached as are accepted ([`HostRule`]): `localhost`, loopback
//!   addresses, the address the connection arrived on, and `--allow-host`
//!   names. An attacker controls the DNS of its own names, never these.
//! - **Cross-origin requests** (`fetch` in `no-cors` mode, a `text/plain` POST,
//!   a form): the browser sends `Origin` and `Sec-Fetch-Site`. A request whose
//!   `Origin` is not the proxy's own (`http://` + its `Host`), or whose
//!   `Sec-Fetch-Site` is `cross-site` or `same-site`, is refused.
//! - **CORS preflights** (`OPTIONS` with `Access-Control-Request-Method`) are
//!   refused, and no answer of the proxy carries `Access-Control-*` headers
//!   (those of upstream answers are removed), so no page may read one.
//!
//! Programs (the SDKs, curl, Claude Code) send neither `Origin` nor
//! `Sec-Fetch-Site` and reach the proxy by one of the accepted names.
//!
//! Ports are not compared: a browser cannot make a page's request carry a
//! loopback name unless it really went to a loopback address, and a port
//! forward (`ssh -L`, `kubectl port-forward`) legitimately changes the port.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anthropic_wif_core::Error;
use hyper::header::{self, HeaderMap};
use hyper::{Method, Uri};

/// The `Host` names the proxy accepts.
#[derive(Clone, Debug, Default)]
pub(crate) struct HostRule {
    /// `--allow-host` names, lower case (IP literals as parsed addresses).
    names: Vec<String>,
    ips: Vec<IpAddr>,
}

impl HostRule {
    /// Check and keep the `--allow-host` values: a host name or an IP address,
    /// without scheme, port or path.
    pub(crate) fn new(allow: &[String]) -> Result<HostRule, Error> {
        let mut rule = HostRule::default();
        for a in allow {
            let v = a.trim().trim_end_matches('.').to_ascii_lowercase();
            let bare = v.strip_prefix('[').and_then(|x| x.strip_suffix(']')).unwrap_or(&v);
            if let Ok(ip) = bare.parse::<IpAddr>() {
                rule.ips.push(ip.to_canonical());
                continue;
            }
            let ok = !v.is_empty()
                && v.len() <= 253
                && v.split('.').all(|l| {
                    !l.is_empty()
                        && l.len() <= 63
                        && l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
                });
            if !ok {
                return Err(Error::config(format!(
                    "--allow-host {a:?} is not a host name or an IP address; give the name clients use in their \
                     base URL, without scheme or port (e.g. --allow-host proxy.internal)"
                )));
            }
            rule.names.push(v);
        }
        Ok(rule)
    }

    /// Whether `host` (a `Host` header value or a URI authority, `name[:port]`
    /// or `[v6][:port]`) names this proxy, reached on local address `local`.
    fn accepts(&self, host: &str, local: Option<IpAddr>) -> bool {
        let Some(name) = host_name(host) else { return false };
        let bare = name.strip_prefix('[').and_then(|x| x.strip_suffix(']'));
        let ip = match bare {
            Some(v6) => match v6.parse::<Ipv6Addr>() {
                Ok(a) => Some(IpAddr::V6(a)),
                Err(_) => return false,
            },
            None => name.parse::<Ipv4Addr>().ok().map(IpAddr::V4),
        };
        match ip {
            Some(ip) => {
                let ip = ip.to_canonical();
                ip.is_loopback() || local.is_some_and(|l| l.to_canonical() == ip) || self.ips.contains(&ip)
            }
            None => {
                let name = name.to_ascii_lowercase();
                name == "localhost" || self.names.contains(&name)
            }
        }
    }
}

/// The host part of `name[:port]` / `[v6][:port]`; `None` when malformed.
fn host_name(host: &str) -> Option<&str> {
    let (name, port) = if host.starts_with('[') {
        let end = host.find(']')?;
        (&host[..=end], &host[end + 1..])
    } else {
        match host.split_once(':') {
            Some((n, _)) => (n, &host[n.len()..]),
            None => (host, ""),
        }
    };
    let port_ok = port.is_empty() || port.strip_prefix(':').is_some_and(|p| p.parse::<u16>().is_ok());
    (port_ok && !name.is_empty()).then_some(name)
}

/// Why a request was refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// No `Host` header (HTTP/1.1 requires one).
    NoHost,
    /// A `Host` (or absolute request target) the proxy is not reached as.
    Host(String),
    /// An `Origin` other than the proxy's own.
    Origin(String),
    /// `Sec-Fetch-Site: cross-site` or `same-site` (or an unknown value).
    FetchSite(String),
    /// A CORS preflight.
    Preflight,
}

impl Refusal {
    /// The access-log note.
    pub(crate) fn note(&self) -> &'static str {
        match self {
            Refusal::NoHost | Refusal::Host(_) => "refused-host",
            Refusal::Origin(_) => "refused-origin",
            Refusal::FetchSite(_) => "refused-sec-fetch-site",
            Refusal::Preflight => "refused-preflight",
        }
    }

    /// The message for the client (values shown in `{:?}` quoting, bounded).
    pub(crate) fn message(&self) -> String {
        let shown = |v: &str| format!("{:?}", v.chars().take(200).collect::<String>());
        match self {
            Refusal::NoHost => "the request has no Host header".into(),
            Refusal::Host(h) => format!(
                "Host {} is not a name this proxy is reached as (localhost, a loopback address, the address it \
                 listens on); a web page may be trying to use it (DNS rebinding). If clients use this name, start \
                 the proxy with --allow-host NAME",
                shown(h)
            ),
            Refusal::Origin(o) => format!(
                "a request from a web page (Origin {}) is not forwarded: the proxy serves programs on this \
                 machine, not browsers",
                shown(o)
            ),
            Refusal::FetchSite(s) => format!(
                "a request a browser sent for another site (Sec-Fetch-Site {}) is not forwarded: the proxy serves \
                 programs on this machine, not browsers",
                shown(s)
            ),
            Refusal::Preflight => {
                "CORS preflight refused: the proxy serves programs on this machine, not browsers".into()
            }
        }
    }
}

/// Check a request before anything else is done with it. `local` is the
/// address the connection arrived on (`None` for a Unix socket).
pub(crate) fn check(
    rule: &HostRule,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    local: Option<IpAddr>,
) -> Result<(), Refusal> {
    let text = |v: &hyper::header::HeaderValue| String::from_utf8_lossy(v.as_bytes()).into_owned();
    // An absolute request target names the host itself (RFC 9112 §3.2.2).
    if let Some(a) = uri.authority() {
        if !rule.accepts(a.as_str(), local) {
            return Err(Refusal::Host(a.as_str().to_string()));
        }
    }
    let mut hosts = headers.get_all(header::HOST).iter();
    let host = match (hosts.next(), hosts.next()) {
        (Some(h), None) => h,
        (None, _) if uri.authority().is_some() => {
            return check_browser(method, headers, uri.authority().map(|a| a.as_str()))
        }
        (None, _) => return Err(Refusal::NoHost),
        (Some(h), Some(_)) => return Err(Refusal::Host(text(h))),
    };
    let host = match host.to_str() {
        Ok(h) if rule.accepts(h, local) => h,
        _ => return Err(Refusal::Host(text(host))),
    };
    check_browser(method, headers, Some(host))
}

/// The checks against requests a browser makes for a page.
fn check_browser(method: &Method, headers: &HeaderMap, host: Option<&str>) -> Result<(), Refusal> {
    let text = |v: &hyper::header::HeaderValue| String::from_utf8_lossy(v.as_bytes()).into_owned();
    if method == Method::OPTIONS && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD) {
        return Err(Refusal::Preflight);
    }
    for site in headers.get_all("sec-fetch-site") {
        if !matches!(site.as_bytes(), b"same-origin" | b"none") {
            return Err(Refusal::FetchSite(text(site)));
        }
    }
    for origin in headers.get_all(header::ORIGIN) {
        let own = host.is_some_and(|h| {
            origin.to_str().ok().and_then(|o| o.strip_prefix("http://")).is_some_and(|o| o.eq_ignore_ascii_case(h))
        });
        if !own {
            return Err(Refusal::Origin(text(origin)));
        }
    }
    Ok(())
}

/// Remove the headers that would let a web page read an answer (`Access-Control-*`).
pub(crate) fn strip_cors(h: &mut HeaderMap) {
    let names: Vec<header::HeaderName> =
        h.keys().filter(|n| n.as_str().starts_with("access-control-")).cloned().collect();
    for n in names {
        h.remove(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn req(method: Method, target: &str, headers: &[(&str, &str)]) -> (Method, Uri, HeaderMap) {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.append(header::HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        (method, target.parse().unwrap(), h)
    }

    fn run(rule: &HostRule, r: (Method, Uri, HeaderMap), local: Option<IpAddr>) -> Result<(), Refusal> {
        check(rule, &r.0, &r.1, &r.2, local)
    }

    #[test]
    fn programs_on_this_machine_pass() {
        let rule = HostRule::new(&["proxy.internal".into(), "10.0.0.7".into()]).unwrap();
        let local = Some("127.0.0.1".parse().unwrap());
        for host in [
            "localhost:8787",
            "LocalHost:8787",
            "localhost",
            "127.0.0.1:8787",
            "127.9.9.9:1",
            "[::1]:8787",
            "[::1]",
            "proxy.internal:80",
            "PROXY.internal",
            "10.0.0.7:8787",
        ] {
            let r = req(Method::POST, "/v1/messages", &[("host", host)]);
            assert_eq!(run(&rule, r, local), Ok(()), "{host}");
        }
        // The address a connection arrived on (e.g. a pod IP with --allow-remote).
        let r = req(Method::GET, "/healthz", &[("host", "192.168.4.2:8787")]);
        assert_eq!(run(&rule, r, Some("192.168.4.2".parse().unwrap())), Ok(()));
        let r = req(Method::GET, "/healthz", &[("host", "192.168.4.2:8787")]);
        assert_eq!(run(&rule, r, Some("::ffff:192.168.4.2".parse().unwrap())), Ok(()), "v4-mapped");
        // Same-origin requests and a typed URL (Sec-Fetch-Site: none).
        let r = req(
            Method::POST,
            "/v1/messages",
            &[("host", "localhost:8787"), ("origin", "http://localhost:8787"), ("sec-fetch-site", "same-origin")],
        );
        assert_eq!(run(&rule, r, local), Ok(()));
        let r = req(Method::GET, "/healthz", &[("host", "127.0.0.1:8787"), ("sec-fetch-site", "none")]);
        assert_eq!(run(&rule, r, local), Ok(()));
    }

    #[test]
    fn rebinding_and_foreign_hosts_are_refused() {
        let rule = HostRule::new(&[]).unwrap();
        let local = Some("127.0.0.1".parse().unwrap());
        for host in [
            "rebind.attacker.example:8787",
            "localhost.attacker.example",
            "127.0.0.1.nip.io:8787",
            "sub.localhost",
            "localhost.",
            "192.168.4.2:8787",
            "[::2]:8787",
            "localhost:notaport",
            "[::1",
            ":8787",
            "",
        ] {
            let r = req(Method::POST, "/v1/messages", &[("host", host)]);
            assert!(matches!(run(&rule, r, local), Err(Refusal::Host(_))), "{host}");
        }
        let r = req(Method::POST, "/v1/messages", &[]);
        assert_eq!(run(&rule, r, local), Err(Refusal::NoHost));
        let r = req(Method::POST, "/v1/messages", &[("host", "localhost"), ("host", "evil.example")]);
        assert!(matches!(run(&rule, r, local), Err(Refusal::Host(_))));
        // An absolute target names the host too.
        let r = req(Method::POST, "http://evil.example/v1/messages", &[("host", "localhost")]);
        assert!(matches!(run(&rule, r, local), Err(Refusal::Host(_))));
        let r = req(Method::POST, "http://localhost:1/v1/messages", &[]);
        assert_eq!(run(&rule, r, local), Ok(()));
        // On a Unix socket there is no local address: names only.
        let r = req(Method::POST, "/v1/messages", &[("host", "127.0.0.1")]);
        assert_eq!(run(&rule, r, None), Ok(()));
    }

    #[test]
    fn pages_of_other_origins_and_preflights_are_refused() {
        let rule = HostRule::new(&[]).unwrap();
        let local = Some("127.0.0.1".parse().unwrap());
        let cases: [(&[(&str, &str)], &str); 7] = [
            (&[("origin", "https://evil.example")], "refused-origin"),
            (&[("origin", "null")], "refused-origin"),
            (&[("origin", "http://localhost:3000")], "refused-origin"),
            (&[("origin", "https://localhost:8787")], "refused-origin"),
            (&[("sec-fetch-site", "cross-site")], "refused-sec-fetch-site"),
            (&[("sec-fetch-site", "same-site")], "refused-sec-fetch-site"),
            (&[("origin", "http://localhost:8787"), ("origin", "http://evil.example")], "refused-origin"),
        ];
        for (extra, note) in cases {
            let mut h = vec![("host", "localhost:8787"), ("content-type", "text/plain")];
            h.extend_from_slice(extra);
            let r = req(Method::POST, "/v1/messages", &h);
            assert_eq!(run(&rule, r, local).map_err(|e| e.note()), Err(note), "{extra:?}");
        }
        let r = req(
            Method::OPTIONS,
            "/v1/messages",
            &[("host", "localhost:8787"), ("access-control-request-method", "POST")],
        );
        assert_eq!(run(&rule, r, local), Err(Refusal::Preflight));
    }

    #[test]
    fn allow_host_values_are_checked() {
        for bad in ["", "http://x", "x:80", "a/b", "a b", "a..b"] {
            let e = HostRule::new(&[bad.into()]).unwrap_err();
            assert!(e.message().contains("--allow-host"), "{e}");
        }
        assert!(HostRule::new(&["[fd00::1]".into(), "fd00::2".into(), "Proxy.Internal.".into()]).is_ok());
    }

    #[test]
    fn cors_headers_are_stripped() {
        let mut h = HeaderMap::new();
        h.insert("access-control-allow-origin", HeaderValue::from_static("*"));
        h.insert("access-control-allow-headers", HeaderValue::from_static("*"));
        h.insert("content-type", HeaderValue::from_static("application/json"));
        strip_cors(&mut h);
        assert_eq!(h.len(), 1);
    }
}
