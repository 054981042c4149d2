//! `anthropic-wif doctor`: render the core's diagnosis (human or `--json`).
//! All logic lives in `anthropic_wif_core::doctor`; this is presentation only.

use std::fmt::Write as _;
use std::io::Write;
use std::process::ExitCode;

use anthropic_wif_core::doctor::{self, Finding, Report, Severity};

use crate::args::DoctorArgs;

const OK: &str = "✓";
const BAD: &str = "✗";
const WARN: &str = "!";
const NOTE: &str = "·";

pub fn run(args: DoctorArgs) -> ExitCode {
    args.common.diagnostics();
    anthropic_wif_core::process::harden();
    let exchange = args.doctor.has("exchange");
    let report = match args.common.options(Some(&args.doctor)) {
        Ok(options) => doctor::diagnose_with(&args.common.provider_options_for(&options), &options.doctor),
        Err(e) => Report::from_options_error(&e, exchange),
    };
    let out = if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(s) => format!("{s}\n"),
            Err(e) => {
                eprintln!("anthropic-wif: error [internal]: cannot encode the report: {e}");
                return ExitCode::from(1);
            }
        }
    } else {
        render(&report, exchange)
    };
    let mut stdout = std::io::stdout().lock();
    if stdout.write_all(out.as_bytes()).and_then(|_| stdout.flush()).is_err() {
        eprintln!("anthropic-wif: error [internal]: cannot write to stdout");
        return ExitCode::from(1);
    }
    ExitCode::from(report.exit_code.clamp(0, 255) as u8)
}

/// `45 s`, `540 s = 9m00s`, `7200 s = 2h00m`.
fn secs(s: i64) -> String {
    let a = s.unsigned_abs();
    if a >= 3600 {
        format!("{s} s = {}h{:02}m", a / 3600, (a % 3600) / 60)
    } else if a >= 120 {
        format!("{s} s = {}m{:02}s", a / 60, a % 60)
    } else {
        format!("{s} s")
    }
}

/// The human report.
pub fn render(r: &Report, exchange_requested: bool) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "anthropic-wif doctor");

    // Configuration.
    let _ = writeln!(o, "\nConfiguration");
    let c = &r.config;
    match (&c.description, &c.error) {
        (Some(d), _) => {
            let mark = if c.error.is_some() { BAD } else { OK };
            let _ = writeln!(o, "  {mark} {d}");
        }
        (None, Some(_)) => {
            let _ = writeln!(o, "  {BAD} the configuration did not resolve (see findings)");
        }
        (None, None) => {}
    }
    if let Some(d) = &c.config_dir {
        let _ = writeln!(o, "    {:<20} {d}", "config dir");
    }
    if let Some(p) = &c.profile {
        let _ = writeln!(o, "    {:<20} {p} ({})", "profile", c.profile_path.as_deref().unwrap_or("?"));
    }
    for f in &c.fields {
        let _ = writeln!(o, "    {:<20} {}  [{}]", f.name, f.value, f.origin.display);
    }
    if let Some(s) = &c.shadowed {
        let _ = writeln!(o, "    {:<20} {s}", "ignored (shadowed)");
    }

    // Ids.
    if !r.ids.is_empty() {
        let _ = writeln!(o, "\nIds");
        for id in &r.ids {
            match &id.error {
                None => {
                    let _ = writeln!(o, "  {OK} {:<20} {}", id.field, id.value);
                }
                Some(e) => {
                    let _ = writeln!(o, "  {BAD} {:<20} {e}", id.field);
                }
            }
        }
    }

    // Identity token.
    if let Some(idr) = &r.identity {
        let _ = writeln!(o, "\nIdentity token");
        match (&idr.error, idr.size_bytes) {
            (Some(e), _) => {
                let _ = writeln!(o, "  {BAD} {} [{}]: {}", idr.description, idr.origin.display, e.message());
            }
            (None, Some(n)) => {
                let mark = if idr.decode_error.is_some() { BAD } else { OK };
                let _ = writeln!(o, "  {mark} {} [{}]: {n} bytes", idr.description, idr.origin.display);
            }
            (None, None) => {
                let _ = writeln!(o, "  {NOTE} {} [{}]", idr.description, idr.origin.display);
            }
        }
        if let Some(e) = &idr.decode_error {
            let _ = writeln!(o, "    not a decodable JWT: {e}");
        }
        if let Some(t) = &idr.token {
            let mut header = vec![format!("alg {}", t.alg.as_deref().unwrap_or("(none)"))];
            header.push(format!("kid {}", t.kid.as_deref().unwrap_or("(none)")));
            if let Some(typ) = &t.typ {
                header.push(format!("typ {typ}"));
            }
            let _ = writeln!(o, "    {:<8} {}", "header", header.join(", "));
            let _ = writeln!(o, "    {:<8} {}", "iss", t.iss.as_deref().unwrap_or("(none)"));
            let _ = writeln!(o, "    {:<8} {}", "sub", t.sub.as_deref().unwrap_or("(none)"));
            let aud = if t.aud.is_empty() { "(none)".to_string() } else { t.aud.join(", ") };
            let _ = writeln!(o, "    {:<8} {aud}  (expected {})", "aud", idr.expected_audience);
            if let Some(iat) = t.iat {
                let _ = writeln!(o, "    {:<8} {iat} ({} ago)", "iat", secs(r.checked_at - iat));
            } else {
                let _ = writeln!(o, "    {:<8} (none)", "iat");
            }
            match (t.exp, t.remaining_s) {
                (Some(exp), Some(left)) if left > 0 => {
                    let _ = writeln!(o, "    {:<8} {exp} (in {})", "exp", secs(left));
                }
                (Some(exp), Some(left)) => {
                    let _ = writeln!(o, "    {:<8} {exp} (expired {} ago)", "exp", secs(-left));
                }
                _ => {
                    let _ = writeln!(o, "    {:<8} (none)", "exp");
                }
            }
            if let Some(l) = t.lifetime_s {
                let _ = writeln!(o, "    {:<8} {}", "lifetime", secs(l));
            }
        }
    }

    // Cache.
    if let Some(cache) = &r.cache {
        let _ = writeln!(o, "\nToken cache");
        let path = cache.path.as_deref().unwrap_or("(none)");
        let line = match cache.state {
            "disabled" => format!("{NOTE} disabled (--no-cache)"),
            "missing" => format!("{NOTE} {path}: no cached token yet (the first exchange writes it)"),
            "valid" => match cache.remaining_s {
                Some(left) => format!("{OK} {path}: a valid token, {} left", secs(left)),
                None => format!("{OK} {path}: a valid token without expiry"),
            },
            "expired" => format!("{NOTE} {path}: the cached token has expired (the next call exchanges anew)"),
            other => format!("{WARN} {path}: {other}: {}", cache.detail.as_deref().unwrap_or("")),
        };
        let _ = writeln!(o, "  {line}");
    }

    // Exchange.
    let ex = &r.exchange;
    if r.identity.is_some() || exchange_requested {
        let _ = writeln!(o, "\nExchange");
        if !ex.requested {
            let _ = writeln!(
                o,
                "  {NOTE} not attempted (add --exchange to try one; that consumes the identity token, which the server accepts only once)"
            );
        } else if let Some(reason) = &ex.skipped_reason {
            let _ = writeln!(o, "  {NOTE} skipped: {reason}");
        } else if ex.ok == Some(true) {
            let _ = writeln!(
                o,
                "  {OK} HTTP {}, request-id {}, granted {}, token {}",
                ex.status.unwrap_or(200),
                ex.request_id.as_deref().unwrap_or("(none)"),
                ex.granted_lifetime_s.map(secs).unwrap_or_else(|| "?".into()),
                ex.token_masked.as_deref().unwrap_or("?")
            );
            match &ex.cached_in {
                Some(p) => {
                    let _ = writeln!(o, "    cached in {p}");
                }
                None => {
                    let _ = writeln!(o, "    not cached (--no-cache): the identity token used is now consumed");
                }
            }
        } else if let Some(e) = &ex.error {
            let status = e.status.map(|s| format!("HTTP {s}, ")).unwrap_or_default();
            let rid = e.request_id().map(|s| format!("request-id {s}, ")).unwrap_or_default();
            let _ = writeln!(o, "  {BAD} failed ({status}{rid}{}): see findings", e.kind);
        }
    }

    // Findings.
    let shown: Vec<&Finding> = r.findings.iter().filter(|f| f.code != doctor::codes::EXCHANGE_SKIPPED).collect();
    if !shown.is_empty() {
        let _ = writeln!(o, "\nFindings");
        for f in shown {
            let mark = match f.severity {
                Severity::Error => BAD,
                Severity::Warning => WARN,
                Severity::Info => NOTE,
            };
            let _ = writeln!(o, "  {mark} [{}] {}", f.code, f.message);
            let _ = writeln!(o, "      fix: {}", f.fix);
        }
    }

    let _ = writeln!(o);
    if r.healthy {
        match r.warnings {
            0 => {
                let _ = writeln!(o, "Result: {OK} healthy");
            }
            n => {
                let _ = writeln!(o, "Result: {OK} healthy, with {n} warning{}", if n == 1 { "" } else { "s" });
            }
        }
    } else {
        let _ = writeln!(
            o,
            "Result: {BAD} unhealthy: {} error{}, {} warning{} (exit {})",
            r.errors,
            if r.errors == 1 { "" } else { "s" },
            r.warnings,
            if r.warnings == 1 { "" } else { "s" },
            r.exit_code
        );
    }
    o
}
