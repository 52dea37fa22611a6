//! Metrics for Prometheus: each stage (backup, export, retention, offsite) publishes what it did,
//! on success and on failure, to a Pushgateway and/or a node-exporter textfile.
//!
//! Every value is a gauge of the last run (`…_bytes`, `…_seconds`, counts); timestamps are Unix
//! seconds. A failed run publishes its attempt time and `…_success 0`, never a success time: to a
//! Pushgateway with POST, which replaces only the metrics it sends, so the last success stays; in a
//! textfile by carrying the previous success line over. Publishing is best effort: a failure is
//! logged, never raised, since the backup it describes already stands.
//!
//! A Pushgateway behind basic auth gets `metrics.pushgateway_user` and a password from a secret
//! ([`crate::secret::Secret`]); credentials in the URL are refused, since the URL is printed in
//! errors and warnings.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, ErrorKind, Result};

/// One metric of a stage.
#[derive(Debug, Clone, PartialEq)]
pub struct Gauge {
    /// Full name, `cairn_<stage>_<what>_<unit>`.
    pub name: String,
    /// Its HELP text.
    pub help: &'static str,
    /// Its value.
    pub value: f64,
    /// Labels beside the grouping key (`folder="images"`), none for most.
    pub labels: Vec<(&'static str, String)>,
}

/// What one stage publishes.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    /// `backup`, `export`, `retention`, `offsite`.
    pub stage: &'static str,
    /// Whether the stage did its work.
    pub success: bool,
    /// When it ran (Unix seconds).
    pub at: f64,
    /// Its own figures (left out on failure where they mean nothing).
    pub gauges: Vec<Gauge>,
}

impl Stage {
    /// A stage at `at`, with no figures yet.
    pub fn new(stage: &'static str, success: bool, at: jiff::Timestamp) -> Stage {
        Stage {
            stage,
            success,
            at: at.as_millisecond() as f64 / 1000.0,
            gauges: Vec::new(),
        }
    }

    /// Adds `cairn_<stage>_<what>` with `help`.
    pub fn gauge(mut self, what: &str, help: &'static str, value: f64) -> Stage {
        self.gauges.push(Gauge {
            name: format!("cairn_{}_{what}", self.stage),
            help,
            value,
            labels: Vec::new(),
        });
        self
    }

    /// Adds `cairn_<stage>_<what>{label="value"}` with `help`: one series of several under one
    /// name (one per folder, say).
    pub fn labeled(
        mut self,
        what: &str,
        help: &'static str,
        label: (&'static str, &str),
        value: f64,
    ) -> Stage {
        self.gauges.push(Gauge {
            name: format!("cairn_{}_{what}", self.stage),
            help,
            value,
            labels: vec![(label.0, label.1.to_string())],
        });
        self
    }

    fn all(&self) -> Vec<Gauge> {
        let mut out = vec![
            Gauge {
                name: format!("cairn_{}_last_attempt_timestamp_seconds", self.stage),
                help: "When the stage last ran (Unix time).",
                value: self.at,
                labels: Vec::new(),
            },
            Gauge {
                name: format!("cairn_{}_success", self.stage),
                help: "1 if the stage's last run succeeded, 0 if it failed.",
                value: if self.success { 1.0 } else { 0.0 },
                labels: Vec::new(),
            },
        ];
        if self.success {
            out.push(Gauge {
                name: self.success_name(),
                help: "When the stage last succeeded (Unix time).",
                value: self.at,
                labels: Vec::new(),
            });
        }
        out.extend(self.gauges.iter().cloned());
        out
    }

    fn success_name(&self) -> String {
        format!("cairn_{}_last_success_timestamp_seconds", self.stage)
    }

    /// The stage in the Prometheus text format (version 0.0.4).
    pub fn text(&self) -> String {
        let mut s = String::new();
        let mut described = std::collections::HashSet::new();
        for g in self.all() {
            // One HELP and TYPE per name, before its first series.
            if described.insert(g.name.clone()) {
                s.push_str(&format!(
                    "# HELP {0} {1}\n# TYPE {0} gauge\n",
                    g.name, g.help
                ));
            }
            let labels: Vec<String> = g
                .labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
                .collect();
            let labels = if labels.is_empty() {
                String::new()
            } else {
                format!("{{{}}}", labels.join(","))
            };
            s.push_str(&format!("{}{labels} {}\n", g.name, fmt_value(g.value)));
        }
        s
    }
}

/// A label value in the text format: backslash, double quote and newline escaped.
fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn fmt_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// Basic auth for the Pushgateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BasicAuth {
    /// The user.
    pub user: String,
    /// The password (its `Debug` shows nothing).
    pub password: crate::secret::Secret,
}

/// Where metrics go (`[metrics]`).
#[derive(Debug, Clone, Default)]
pub struct Sink {
    /// `http://host:port` of a Pushgateway.
    pub pushgateway: Option<String>,
    /// Basic auth for the Pushgateway, if it asks for it.
    pub auth: Option<BasicAuth>,
    /// A node-exporter textfile collector directory: `cairn_<stage>.prom` there.
    pub textfile_dir: Option<PathBuf>,
    /// The `job` label (grouping key).
    pub job: String,
    /// The `instance` label (grouping key): fixed, since pod names change every night.
    pub instance: String,
}

impl Sink {
    /// Publishes `stages`; failures are logged and returned for the caller to report.
    pub fn publish(&self, stages: &[Stage]) -> Vec<String> {
        let mut errors = Vec::new();
        for st in stages {
            if let Some(url) = &self.pushgateway
                && let Err(e) = push(url, self.auth.as_ref(), &self.job, &self.instance, st)
            {
                tracing::warn!(stage = st.stage, error = %e, "could not push metrics");
                errors.push(e.to_string());
            }
            if let Some(dir) = &self.textfile_dir
                && let Err(e) = write_textfile(dir, st)
            {
                tracing::warn!(stage = st.stage, error = %e, "could not write the metrics file");
                errors.push(e.to_string());
            }
        }
        errors
    }
}

/// Whether `url` holds credentials (`user[:password]@` before the host), with a scheme or without.
fn has_userinfo(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split(['/', '?', '#'])
        .next()
        .is_some_and(|authority| authority.contains('@'))
}

/// `http://host[:port][/prefix]` split into a socket address text and a path prefix.
fn parse_http(url: &str) -> Result<(String, String, String)> {
    // Before anything that quotes the URL: a password in it would be printed with the message
    // (and, were it accepted, in a warning on every run, since it is no part of a host name).
    if has_userinfo(url) {
        return Err(Error::config(
            "metrics.pushgateway must not hold credentials (user:password@host); set \
             metrics.pushgateway_user and the password in CAIRN_PUSHGATEWAY_PASSWORD_FILE instead",
        ));
    }
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        Error::config(format!(
            "metrics.pushgateway {url:?} must be an http:// URL (in-cluster; use textfile_dir otherwise)"
        ))
    })?;
    let (hostport, path) = match rest.split_once('/') {
        Some((h, p)) => (h, format!("/{}", p.trim_end_matches('/'))),
        None => (rest, String::new()),
    };
    if hostport.is_empty() {
        return Err(Error::config(format!(
            "metrics.pushgateway {url:?} has no host"
        )));
    }
    let host = hostport.to_string();
    let addr = if hostport.contains(':') {
        hostport.to_string()
    } else {
        format!("{hostport}:80")
    };
    Ok((addr, host, path.trim_end_matches('/').to_string()))
}

/// Checks a Pushgateway URL (for the configuration).
pub fn check_url(url: &str) -> Result<()> {
    parse_http(url).map(|_| ())
}

/// POSTs a stage to `<url>/metrics/job/<job>/instance/<instance>/stage/<stage>`, with basic
/// auth when given. Errors name the address and the path, never the request's headers.
fn push(url: &str, auth: Option<&BasicAuth>, job: &str, instance: &str, st: &Stage) -> Result<()> {
    let path = format!(
        "/metrics/job/{}/instance/{}/stage/{}",
        label(job),
        label(instance),
        st.stage
    );
    request(url, auth, "POST", &path, &st.text(), "pushing to")
}

/// Asks the Pushgateway whether it is ready (`GET <url>/-/ready`, with the push's auth): what
/// `cairn preflight` checks before a night depends on it.
pub fn probe(url: &str, auth: Option<&BasicAuth>) -> Result<()> {
    request(url, auth, "GET", "/-/ready", "", "asking")
}

/// One HTTP/1.1 request to the Pushgateway at `url` (its path prefix before `path`); a 2xx
/// answer is `Ok`. Errors name the address and the path, never the request's headers.
fn request(
    url: &str,
    auth: Option<&BasicAuth>,
    method: &str,
    path: &str,
    body: &str,
    doing: &str,
) -> Result<()> {
    let (addr, host, prefix) = parse_http(url)?;
    let path = format!("{prefix}{path}");
    let authorization = match auth {
        Some(a) => {
            use base64::Engine;
            let pair = format!("{}:{}", a.user, a.password.expose());
            format!(
                "Authorization: Basic {}\r\n",
                base64::engine::general_purpose::STANDARD.encode(pair)
            )
        }
        None => String::new(),
    };
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\n{authorization}\
         Content-Type: text/plain; version=0.0.4\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let timeout = Duration::from_secs(10);
    let sock = addr
        .to_socket_addrs()
        .map_err(|e| Error::io(format!("resolving {addr}"), e))?
        .next()
        .ok_or_else(|| Error::new(ErrorKind::Io, format!("{addr} resolves to nothing")))?;
    let mut s = TcpStream::connect_timeout(&sock, timeout)
        .map_err(|e| Error::io(format!("connecting to the Pushgateway {addr}"), e))?;
    s.set_read_timeout(Some(timeout)).ok();
    s.set_write_timeout(Some(timeout)).ok();
    s.write_all(request.as_bytes())
        .map_err(|e| Error::io(format!("{doing} {addr}"), e))?;
    let mut answer = Vec::new();
    let _ = s.take(64 * 1024).read_to_end(&mut answer);
    let status = String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or("")
        .to_string();
    let code = status.split_whitespace().nth(1).unwrap_or("");
    if code.starts_with('2') {
        Ok(())
    } else {
        Err(Error::new(
            ErrorKind::Io,
            format!("the Pushgateway {addr} answered {status:?} to {path}"),
        ))
    }
}

/// A grouping-key value for a URL path: letters, digits, `-`, `_`, `.` kept, others `_`.
fn label(v: &str) -> String {
    v.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Writes `cairn_<stage>.prom` atomically; on failure the previous success time is kept.
fn write_textfile(dir: &Path, st: &Stage) -> Result<()> {
    let path = dir.join(format!("cairn_{}.prom", st.stage));
    let mut text = st.text();
    if !st.success
        && let Ok(old) = std::fs::read_to_string(&path)
    {
        let name = st.success_name();
        let kept: Vec<&str> = old
            .lines()
            .filter(|l| {
                l.starts_with(&format!("{name} "))
                    || l.starts_with(&format!("# HELP {name} "))
                    || l.starts_with(&format!("# TYPE {name} "))
            })
            .collect();
        for l in kept {
            text.push_str(l);
            text.push('\n');
        }
    }
    // The textfile collector reads only `*.prom`, never the hidden temporary name.
    std::fs::create_dir_all(dir)
        .and_then(|()| crate::atomic_file::write_whole(&path, text.as_bytes(), false))
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_keeps_the_last_success_in_the_textfile() {
        let dir = tempfile::tempdir().unwrap();
        let t = "2026-11-29T01:00:00Z".parse().unwrap();
        let ok = Stage::new("backup", true, t).gauge("read_bytes", "Bytes read.", 42.0);
        write_textfile(dir.path(), &ok).unwrap();
        let t2 = "2026-11-30T01:00:00Z".parse().unwrap();
        write_textfile(dir.path(), &Stage::new("backup", false, t2)).unwrap();
        let text = std::fs::read_to_string(dir.path().join("cairn_backup.prom")).unwrap();
        assert!(
            text.contains("cairn_backup_last_success_timestamp_seconds 1795914000\n"),
            "{text}"
        );
        assert!(
            text.contains("cairn_backup_last_attempt_timestamp_seconds 1796000400\n"),
            "{text}"
        );
        assert!(text.contains("cairn_backup_success 0\n"), "{text}");
        assert!(!text.contains("read_bytes"), "{text}");
        assert!(parse_http("https://x").is_err());
        assert_eq!(
            parse_http("http://pushgateway.monitoring:9091/").unwrap(),
            (
                "pushgateway.monitoring:9091".into(),
                "pushgateway.monitoring:9091".into(),
                String::new()
            )
        );
    }
}
