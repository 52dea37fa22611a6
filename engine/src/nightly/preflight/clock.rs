//! This machine's clock against the store's: leases and markers use the server's clock, but the
//! day a run files under and the logs use this one, and S3 refuses signed requests from a clock
//! too far off.

use std::io::Read;

use super::finding::{Finding, Status, finding};
use crate::config::{StoreConfig, StoreKind};
use crate::store::Store;

/// A clock this far from the server's is a warning (leases and markers use the server's clock,
/// but the day a run files under and the logs use this one).
const SKEW_WARN_SECS: i64 = 60;
/// This far off, S3 refuses signed requests (15 minutes) or soon will: a failure.
const SKEW_FAIL_SECS: i64 = 600;

/// This machine's clock against the server's `Date`. For an `http://` S3 endpoint the `Date`
/// of an unsigned request is read first: a server that refuses signed requests because the
/// clocks are too far apart (MinIO: 403 `RequestTimeTooSkewed`, no body on a HEAD) still says
/// its time, so the line names the clock rather than only the key.
pub(super) fn clock(loc: &StoreConfig, store: Option<&dyn Store>) -> Finding {
    let unsigned = match (&loc.kind, &loc.endpoint) {
        (StoreKind::S3, Some(ep)) => server_date(ep),
        _ => None,
    };
    let server = match unsigned {
        Some(t) => Ok(Some(t)),
        None => match store {
            Some(st) => st.clock(),
            None => {
                return finding(
                    "clock",
                    Status::Warn,
                    "the server's time is unknown: it could not be reached",
                );
            }
        },
    };
    match server {
        Ok(Some(server)) => {
            let skew = jiff::Timestamp::now().as_second() - server.as_second();
            let text = format!("this machine's clock is {skew:+} s from the store's");
            if skew.abs() >= SKEW_FAIL_SECS {
                finding(
                    "clock",
                    Status::Fail,
                    format!("{text}: signed requests fail beyond 15 minutes; fix NTP on the node"),
                )
            } else if skew.abs() >= SKEW_WARN_SECS {
                finding(
                    "clock",
                    Status::Warn,
                    format!("{text}: fix NTP on the node"),
                )
            } else {
                finding("clock", Status::Ok, text)
            }
        }
        Ok(None) => finding(
            "clock",
            Status::Ok,
            "the store is this machine's (no server clock to compare)",
        ),
        Err(e) => finding(
            "clock",
            Status::Warn,
            format!("the server's time is unknown: {e}"),
        ),
    }
}

/// The `Date` header of an unsigned `HEAD /` to an `http://host[:port]` endpoint, if it answers
/// within a few seconds with one that parses.
fn server_date(endpoint: &str) -> Option<jiff::Timestamp> {
    use std::io::Write;
    use std::net::{TcpStream, ToSocketAddrs};
    let rest = endpoint.strip_prefix("http://")?;
    let hostport = rest.split('/').next()?;
    if hostport.is_empty() || hostport.contains('@') {
        return None;
    }
    let addr = if hostport
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        hostport.to_string()
    } else {
        format!("{hostport}:80")
    };
    let timeout = std::time::Duration::from_secs(5);
    let sock = addr.to_socket_addrs().ok()?.next()?;
    let mut s = TcpStream::connect_timeout(&sock, timeout).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    s.set_write_timeout(Some(timeout)).ok()?;
    s.write_all(
        format!("HEAD / HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .ok()?;
    let mut head = Vec::new();
    let _ = s.take(16 * 1024).read_to_end(&mut head);
    let text = String::from_utf8_lossy(&head);
    let date = text.lines().take_while(|l| !l.is_empty()).find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("date")
            .then(|| value.trim().to_string())
    })?;
    jiff::fmt::rfc2822::parse(&date).ok().map(|z| z.timestamp())
}
