//! `GET /metrics`: the proxy's counters in the Prometheus text exposition
//! format (version 0.0.4), served on the listener that serves `/healthz` and
//! behind the same guard (no web page may read it). Names and labels are
//! fixed; no value is ever a token, a header or an error text, so the page
//! carries no secret. docs/proxy.md lists every series.
//!
//! Counting costs a few relaxed atomic adds per request: requests by origin
//! and status class when their answer ends, the time upstream took to answer
//! (to its response headers) in a fixed-bucket histogram, and the outcome of
//! every attempt to obtain a token.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anthropic_wif_core::ErrorKind;

/// Outcomes of an attempt to obtain a token: `ok`, then the error kinds.
const OUTCOMES: [&str; 6] = ["ok", "config", "identity", "denied", "unavailable", "internal"];
/// Upper bounds (seconds) of the upstream latency buckets.
pub(crate) const BUCKETS: [f64; 16] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Who made an answer: upstream, or the proxy itself (refusals, 502/503/504).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Origin {
    Upstream = 0,
    Proxy = 1,
}

#[derive(Default)]
pub(crate) struct Metrics {
    exchanges: [AtomicU64; OUTCOMES.len()],
    refresh_failures: AtomicU64,
    requests: [[AtomicU64; CLASSES.len()]; 2],
    /// Per bucket (not cumulative), then +Inf.
    upstream_buckets: [AtomicU64; BUCKETS.len() + 1],
    upstream_sum_micros: AtomicU64,
}

/// Values read at scrape time from elsewhere in the proxy.
pub(crate) struct Gauges {
    pub(crate) ready: bool,
    pub(crate) expires_in: Option<i64>,
    pub(crate) consecutive_failures: u32,
    pub(crate) inflight: u64,
    pub(crate) connections: usize,
    pub(crate) max_connections: usize,
}

fn outcome_index(kind: Option<ErrorKind>) -> usize {
    match kind {
        None => 0,
        Some(k) => OUTCOMES.iter().position(|o| *o == k.as_str()).unwrap_or(OUTCOMES.len() - 1),
    }
}

impl Metrics {
    /// An attempt to obtain a token ended: `None` for success, else the error's kind.
    /// `serving`: a usable token was held meanwhile (a failed replacement).
    pub(crate) fn exchange(&self, failure: Option<ErrorKind>, serving: bool) {
        self.exchanges[outcome_index(failure)].fetch_add(1, Ordering::Relaxed);
        if failure.is_some() && serving {
            self.refresh_failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A request's answer ended (or the client went away) with `status`.
    pub(crate) fn request(&self, origin: Origin, status: u16) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.requests[origin as usize][class].fetch_add(1, Ordering::Relaxed);
    }

    /// Upstream answered (response headers) after `d`.
    pub(crate) fn upstream_latency(&self, d: Duration) {
        let s = d.as_secs_f64();
        let i = BUCKETS.iter().position(|b| s <= *b).unwrap_or(BUCKETS.len());
        self.upstream_buckets[i].fetch_add(1, Ordering::Relaxed);
        self.upstream_sum_micros.fetch_add(d.as_micros().min(u64::MAX as u128) as u64, Ordering::Relaxed);
    }

    /// The exposition page.
    pub(crate) fn render(&self, g: &Gauges) -> String {
        let mut s = String::with_capacity(4096);
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let family = |s: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(s, "# HELP anthropic_wif_proxy_{name} {help}");
            let _ = writeln!(s, "# TYPE anthropic_wif_proxy_{name} {kind}");
        };

        family(&mut s, "token_exchanges_total", "counter",
            "Attempts to obtain a new access token, by outcome (ok, or the error kind: config, identity, denied, unavailable, internal).");
        for (i, o) in OUTCOMES.iter().enumerate() {
            let _ =
                writeln!(s, "anthropic_wif_proxy_token_exchanges_total{{outcome=\"{o}\"}} {}", get(&self.exchanges[i]));
        }
        family(
            &mut s,
            "token_refresh_failures_total",
            "counter",
            "Failed attempts to replace the access token while the current one was still being served.",
        );
        let _ = writeln!(s, "anthropic_wif_proxy_token_refresh_failures_total {}", get(&self.refresh_failures));
        family(
            &mut s,
            "token_consecutive_failures",
            "gauge",
            "Attempts to obtain a token that failed since the last success.",
        );
        let _ = writeln!(s, "anthropic_wif_proxy_token_consecutive_failures {}", g.consecutive_failures);
        family(
            &mut s,
            "token_expires_in_seconds",
            "gauge",
            "Seconds until the current access token expires (no sample while the proxy holds none).",
        );
        if let Some(e) = g.expires_in {
            let _ = writeln!(s, "anthropic_wif_proxy_token_expires_in_seconds {e}");
        }
        family(&mut s, "ready", "gauge", "1 while a token is ready for forwarding (what /healthz reports), else 0.");
        let _ = writeln!(s, "anthropic_wif_proxy_ready {}", u8::from(g.ready));

        family(
            &mut s,
            "requests_total",
            "counter",
            "Requests answered (counted when the answer ends or the client leaves), by who answered and status class.",
        );
        for (o, origin) in ["upstream", "proxy"].iter().enumerate() {
            for (c, class) in CLASSES.iter().enumerate() {
                let _ = writeln!(
                    s,
                    "anthropic_wif_proxy_requests_total{{origin=\"{origin}\",class=\"{class}\"}} {}",
                    get(&self.requests[o][c])
                );
            }
        }
        family(
            &mut s,
            "upstream_response_seconds",
            "histogram",
            "Time from sending a request upstream to its response headers.",
        );
        let mut cumulative = 0;
        for (i, b) in BUCKETS.iter().enumerate() {
            cumulative += get(&self.upstream_buckets[i]);
            let _ = writeln!(s, "anthropic_wif_proxy_upstream_response_seconds_bucket{{le=\"{b}\"}} {cumulative}");
        }
        cumulative += get(&self.upstream_buckets[BUCKETS.len()]);
        let _ = writeln!(s, "anthropic_wif_proxy_upstream_response_seconds_bucket{{le=\"+Inf\"}} {cumulative}");
        let sum = get(&self.upstream_sum_micros) as f64 / 1e6;
        let _ = writeln!(s, "anthropic_wif_proxy_upstream_response_seconds_sum {sum}");
        let _ = writeln!(s, "anthropic_wif_proxy_upstream_response_seconds_count {cumulative}");

        family(&mut s, "requests_in_flight", "gauge", "Requests being answered now (a stream counts until it ends).");
        let _ = writeln!(s, "anthropic_wif_proxy_requests_in_flight {}", g.inflight);
        family(&mut s, "connections_open", "gauge", "Client connections open now.");
        let _ = writeln!(s, "anthropic_wif_proxy_connections_open {}", g.connections);
        family(
            &mut s,
            "connections_max",
            "gauge",
            "The most client connections served at once (--max-connections, fitted to the open-file limit).",
        );
        let _ = writeln!(s, "anthropic_wif_proxy_connections_max {}", g.max_connections);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gauges() -> Gauges {
        Gauges {
            ready: true,
            expires_in: Some(42),
            consecutive_failures: 0,
            inflight: 3,
            connections: 2,
            max_connections: 10,
        }
    }

    #[test]
    fn buckets_are_cumulative_and_counts_add_up() {
        let m = Metrics::default();
        m.upstream_latency(Duration::from_micros(300)); // first bucket
        m.upstream_latency(Duration::from_millis(3)); // le=0.005
        m.upstream_latency(Duration::from_secs(100)); // +Inf only
        let page = m.render(&gauges());
        assert!(page.contains("anthropic_wif_proxy_upstream_response_seconds_bucket{le=\"0.0005\"} 1\n"), "{page}");
        assert!(page.contains("anthropic_wif_proxy_upstream_response_seconds_bucket{le=\"0.005\"} 2\n"));
        assert!(page.contains("anthropic_wif_proxy_upstream_response_seconds_bucket{le=\"60\"} 2\n"));
        assert!(page.contains("anthropic_wif_proxy_upstream_response_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(page.contains("anthropic_wif_proxy_upstream_response_seconds_count 3\n"));
    }

    #[test]
    fn outcomes_classes_and_failures() {
        let m = Metrics::default();
        m.exchange(None, false);
        m.exchange(Some(ErrorKind::Unavailable), true);
        m.exchange(Some(ErrorKind::Denied), false);
        m.request(Origin::Upstream, 200);
        m.request(Origin::Proxy, 503);
        m.request(Origin::Proxy, 0); // a client that left before any status: counted as 1xx, never out of range
        let page = m.render(&Gauges { expires_in: None, ..gauges() });
        for line in [
            "token_exchanges_total{outcome=\"ok\"} 1",
            "token_exchanges_total{outcome=\"unavailable\"} 1",
            "token_exchanges_total{outcome=\"denied\"} 1",
            "token_refresh_failures_total 1",
            "requests_total{origin=\"upstream\",class=\"2xx\"} 1",
            "requests_total{origin=\"proxy\",class=\"5xx\"} 1",
            "requests_total{origin=\"proxy\",class=\"1xx\"} 1",
        ] {
            assert!(page.contains(&format!("anthropic_wif_proxy_{line}\n")), "{line} in {page}");
        }
        assert!(
            !page.lines().any(|l| l.starts_with("anthropic_wif_proxy_token_expires_in_seconds")),
            "no sample without a token"
        );
    }
}
