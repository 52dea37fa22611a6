//! What the store costs and what time the server keeps: an SDK interceptor counts every request
//! and the bytes either way, and notes the `Date` of each response (the clock leases are timed
//! by, see `Store::clock`).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use aws_sdk_s3::config::interceptors::{
    BeforeDeserializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
};
use aws_sdk_s3::config::{ConfigBag, Intercept, RuntimeComponents};

/// Requests and bytes, counted by [`Counting`] on every request the SDK sends.
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) requests: AtomicU64,
    pub(super) gets: AtomicU64,
    pub(super) puts: AtomicU64,
    pub(super) heads: AtomicU64,
    pub(super) deletes: AtomicU64,
    pub(super) bytes_read: AtomicU64,
    pub(super) bytes_written: AtomicU64,
    pub(super) copies: AtomicU64,
    pub(super) bytes_copied: AtomicU64,
    /// The `Date` of the last response, and when it arrived.
    pub(super) date: std::sync::Mutex<Option<(jiff::Timestamp, std::time::Instant)>>,
}

/// An SDK interceptor that counts what goes over the wire: one place sees every request
/// (multipart parts, listings, retries by the engine), so no call site can forget to count.
#[derive(Debug)]
pub(super) struct Counting(pub(super) std::sync::Arc<Counters>);

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl Intercept for Counting {
    fn name(&self) -> &'static str {
        "cairn-request-counter"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> std::result::Result<(), BoxError> {
        let c = &self.0;
        let req = context.request();
        c.requests.fetch_add(1, Relaxed);
        match req.method() {
            "GET" => &c.gets,
            "HEAD" => &c.heads,
            "DELETE" => &c.deletes,
            _ => &c.puts,
        }
        .fetch_add(1, Relaxed);
        if let Some(n) = req.body().content_length() {
            c.bytes_written.fetch_add(n, Relaxed);
        }
        if req.headers().contains_key("x-amz-copy-source") {
            c.copies.fetch_add(1, Relaxed);
            // `bytes=FIRST-LAST`, inclusive; a whole-object copy names no range and is not
            // one cairn makes.
            let range = req
                .headers()
                .get("x-amz-copy-source-range")
                .and_then(|r| r.strip_prefix("bytes="))
                .and_then(|r| r.split_once('-'))
                .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)));
            if let Some((first, last)) = range {
                c.bytes_copied
                    .fetch_add(last.saturating_sub(first) + 1, Relaxed);
            }
        }
        Ok(())
    }

    fn read_before_deserialization(
        &self,
        context: &BeforeDeserializationInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> std::result::Result<(), BoxError> {
        // The body's own length, not the header: a HEAD's Content-Length is the object's size,
        // and nothing of it is sent.
        if let Some(n) = context.response().body().content_length() {
            self.0.bytes_read.fetch_add(n, Relaxed);
        }
        // The server's clock, for leases (see `Store::clock`).
        if let Some(t) = context
            .response()
            .headers()
            .get("date")
            .and_then(|d| jiff::fmt::rfc2822::parse(d).ok())
        {
            *self.0.date.lock().expect("poisoned") =
                Some((t.timestamp(), std::time::Instant::now()));
        }
        Ok(())
    }
}
