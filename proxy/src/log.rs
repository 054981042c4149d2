//! The proxy's log on stderr: one line per request (the access log) and one
//! per event (token obtained, refused or failing; an answer the proxy made
//! itself; start, drain), as text or as one JSON object per line
//! (`--log-format`; the fields are listed in docs/proxy.md).
//!
//! Lines go to a writer thread: a request never waits for stderr, and lines
//! written in a burst leave in one write. Nothing logged here is a secret:
//! the access log has the path without its query, never a header; events
//! carry error texts, which core keeps free of tokens and JWTs.

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// `anthropic-wif proxy: …` lines (the default).
    #[default]
    Text,
    /// One JSON object per line, `{"ts":…,"type":…,…}`.
    Json,
}

impl LogFormat {
    /// `text` or `json`.
    pub fn parse(s: &str) -> Result<LogFormat, anthropic_wif_core::Error> {
        match s.trim().to_ascii_lowercase().as_str() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(anthropic_wif_core::Error::config(format!("--log-format {s:?} is not one of: text, json"))),
        }
    }
}

enum LogMsg {
    Line(String),
    Flush(std::sync::mpsc::SyncSender<()>),
}

fn logger() -> Option<&'static std::sync::mpsc::Sender<LogMsg>> {
    static LOGGER: std::sync::OnceLock<Option<std::sync::mpsc::Sender<LogMsg>>> = std::sync::OnceLock::new();
    LOGGER
        .get_or_init(|| {
            let (tx, rx) = std::sync::mpsc::channel::<LogMsg>();
            std::thread::Builder::new()
                .name("anthropic-wif-proxy-log".into())
                .spawn(move || {
                    let mut out = std::io::BufWriter::with_capacity(64 * 1024, std::io::stderr());
                    while let Ok(mut msg) = rx.recv() {
                        loop {
                            match msg {
                                LogMsg::Line(l) => {
                                    let _ = out.write_all(l.as_bytes());
                                }
                                LogMsg::Flush(done) => {
                                    let _ = out.flush();
                                    let _ = done.send(());
                                }
                            }
                            match rx.try_recv() {
                                Ok(m) => msg = m,
                                Err(_) => break,
                            }
                        }
                        let _ = out.flush();
                    }
                })
                .ok()
                .map(|_| tx)
        })
        .as_ref()
}

/// Write one finished line (ending in `\n`).
fn write_line(line: String) {
    match logger() {
        Some(tx) => {
            let _ = tx.send(LogMsg::Line(line));
        }
        // No thread for the writer: write directly, one write per line.
        None => {
            let _ = std::io::stderr().lock().write_all(line.as_bytes());
        }
    }
}

/// Wait (briefly) until every line logged so far is written.
pub(crate) fn flush() {
    if let Some(tx) = logger() {
        let (done_tx, done_rx) = std::sync::mpsc::sync_channel(1);
        if tx.send(LogMsg::Flush(done_tx)).is_ok() {
            let _ = done_rx.recv_timeout(Duration::from_secs(2));
        }
    }
}

/// One event: `text` (without the `anthropic-wif proxy: ` prefix or the line
/// end) in the text format; `{"ts":…,"type":kind,"event":name,…fields}` in JSON.
pub(crate) fn event(format: LogFormat, kind: &str, name: &str, text: impl FnOnce() -> String, fields: Value) {
    match format {
        LogFormat::Text => write_line(format!("anthropic-wif proxy: {}\n", text())),
        LogFormat::Json => {
            let mut obj = Map::new();
            obj.insert("event".into(), name.into());
            if let Value::Object(f) = fields {
                obj.extend(f);
            }
            write_line(json_line(kind, obj));
        }
    }
}

/// An access-log line in JSON: `{"ts":…,"type":"access",…fields}`.
pub(crate) fn access_json(fields: Map<String, Value>) {
    write_line(json_line("access", fields));
}

pub(crate) fn access_text(line: String) {
    write_line(line);
}

/// `ts` and `type` first, then the fields (sorted), then the line end.
fn json_line(kind: &str, fields: Map<String, Value>) -> String {
    let mut s = String::with_capacity(160);
    s.push_str("{\"ts\":\"");
    s.push_str(&rfc3339(SystemTime::now()));
    s.push_str("\",\"type\":");
    s.push_str(&Value::from(kind).to_string());
    for (k, v) in fields {
        if k == "ts" || k == "type" {
            continue;
        }
        s.push(',');
        s.push_str(&Value::from(k).to_string());
        s.push(':');
        s.push_str(&v.to_string());
    }
    s.push_str("}\n");
    s
}

/// `2025-01-31T12:34:56.789Z` (UTC, milliseconds).
pub(crate) fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let (y, m, day, hh, mm, ss) = anthropic_wif_core::utc_civil(d.as_secs().min(i64::MAX as u64) as i64);
    format!("{y:04}-{m:02}-{day:02}T{hh:02}:{mm:02}:{ss:02}.{:03}Z", d.subsec_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_rfc3339() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        // 2024-02-29T23:59:59.250Z: a leap day.
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_millis(1_709_251_199_250)), "2024-02-29T23:59:59.250Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn json_lines_put_ts_and_type_first() {
        let mut m = Map::new();
        m.insert("b".into(), 1.into());
        m.insert("type".into(), "spoofed".into());
        m.insert("a".into(), "x\"y".into());
        let l = json_line("access", m);
        assert!(l.starts_with("{\"ts\":\"") && l.ends_with("}\n"), "{l}");
        let v: Value = serde_json::from_str(l.trim_end()).unwrap();
        assert_eq!(v["type"], "access");
        assert_eq!(v["a"], "x\"y");
        assert_eq!(v["b"], 1);
        assert!(l.find("\"type\"").unwrap() < l.find("\"a\"").unwrap());
    }

    #[test]
    fn formats_parse() {
        assert_eq!(LogFormat::parse("JSON").unwrap(), LogFormat::Json);
        assert_eq!(LogFormat::parse("text").unwrap(), LogFormat::Text);
        assert!(LogFormat::parse("xml").unwrap_err().to_string().contains("--log-format"));
    }
}
