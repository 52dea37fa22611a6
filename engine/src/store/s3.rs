//! An S3 store (MinIO in production, Garage in tests) on aws-sdk-s3.
//!
//! The SDK is async; the engine is not. The store owns a small tokio runtime and blocks on it,
//! which keeps the `Store` trait synchronous for every caller. Requests carry checksums only when
//! the operation requires them, because older MinIO releases and other S3 servers reject the
//! newer default checksum trailers. The SDK's own retries are off: the engine's `RetryStore`
//! retries whole operations, and this module retries the parts of a multipart upload, which
//! cannot be replayed from outside. Nothing here relies on conditional writes (`If-None-Match`):
//! every key the engine writes is either content-addressed or written by one process at a time.

use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::interceptors::{
    BeforeDeserializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
};
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, ConfigBag, Credentials, Intercept, Region, RequestChecksumCalculation,
    ResponseChecksumValidation, RuntimeComponents,
};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::head_object::HeadObjectOutput;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};

use super::{
    Cleaned, ObjectInfo, ObjectWriter, RequestStats, RetryPolicy, ServerObject, Store, check_key,
    check_prefix,
};
use crate::error::{Error, ErrorKind, Result};

/// Where and how to reach the bucket. Credentials are kept out of `Debug`.
#[derive(Clone)]
pub struct S3Config {
    /// Endpoint URL, e.g. `http://minio.example:9000`; `None` for AWS itself.
    pub endpoint: Option<String>,
    /// Region name (MinIO accepts any; Garage wants its configured one).
    pub region: String,
    /// Bucket.
    pub bucket: String,
    /// Key prefix inside the bucket (no leading or trailing `/` needed).
    pub prefix: String,
    /// Path-style addressing (`endpoint/bucket/key`), which MinIO and Garage need.
    pub path_style: bool,
    /// Access key id.
    pub access_key: String,
    /// Secret access key.
    pub secret_key: String,
    /// Session token, if any.
    pub session_token: Option<String>,
    /// How the steps of a multipart upload (and a pinning HEAD) are retried: the policy the
    /// [`RetryStore`](super::RetryStore) around this store applies to every other request.
    pub retry: RetryPolicy,
    /// The server as errors name it.
    pub server_name: String,
}

impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("path_style", &self.path_style)
            .finish_non_exhaustive()
    }
}

/// Multipart part size; the archive streams out in pieces of this size.
const PART_SIZE: usize = 16 << 20;
/// The smallest part S3 accepts, except for the last one: a run of bytes copied inside the
/// server is at least this long, and so is the part sent before it.
const MIN_PART: usize = 5 << 20;
/// A run of bytes to copy is cut into copies of at most this, which bounds what a writer holds
/// for it (the bytes stay until the copy is done, to be sent if the server refuses it).
const MAX_RUN: usize = PART_SIZE;
/// S3 takes at most 10,000 parts per upload. Copies make parts as small as 5 MiB, so they stop
/// after half of them and the parts after that are twice as large: an archive can still reach
/// 5,000 × 5 MiB + 5,000 × 32 MiB, more than 10,000 parts of 16 MiB without copies.
const MAX_PARTS: usize = 10_000;
const COPIES_UNTIL: usize = MAX_PARTS / 2;
/// The most a read reserves before its body arrives, whatever length the server declares.
const PREALLOC_MAX: u64 = 64 << 20;
/// Parts uploaded at once by one writer.
const PARTS_IN_FLIGHT: usize = 3;
/// The longest an unfinished writer tries to abort its upload: past it the upload is left to
/// the next run's `clean_temporaries` rather than hold a failing night for another budget.
const ABORT_BUDGET: Duration = Duration::from_secs(30);

/// Objects in an S3 bucket below a prefix.
pub struct S3Store {
    client: Client,
    counters: std::sync::Arc<Counters>,
    rt: tokio::runtime::Runtime,
    bucket: String,
    prefix: String,
    endpoint: Option<String>,
    region: String,
    retry: RetryPolicy,
    server_name: String,
}

/// What the store cost, for the logs: a run's requests per store at debug level.
impl Drop for S3Store {
    fn drop(&mut self) {
        if let Some(st) = self.request_stats() {
            tracing::debug!(bucket = %self.bucket, prefix = %self.prefix, requests = st.requests,
                gets = st.gets, puts = st.puts, heads = st.heads, deletes = st.deletes,
                bytes_read = st.bytes_read, bytes_written = st.bytes_written, "S3 requests made");
        }
    }
}

impl fmt::Debug for S3Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Store")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .finish()
    }
}

/// Requests and bytes, counted by [`Counting`] on every request the SDK sends.
#[derive(Debug, Default)]
struct Counters {
    requests: AtomicU64,
    gets: AtomicU64,
    puts: AtomicU64,
    heads: AtomicU64,
    deletes: AtomicU64,
    bytes_read: AtomicU64,
    bytes_written: AtomicU64,
    /// The `Date` of the last response, and when it arrived.
    date: std::sync::Mutex<Option<(jiff::Timestamp, std::time::Instant)>>,
}

/// An SDK interceptor that counts what goes over the wire: one place sees every request
/// (multipart parts, listings, retries by the engine), so no call site can forget to count.
#[derive(Debug)]
struct Counting(std::sync::Arc<Counters>);

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

/// Reads a credential from `NAME`, or from the file named by `NAME_FILE` (a mounted Secret).
pub fn credential_from_env(name: &str) -> Result<Option<String>> {
    if let Ok(v) = std::env::var(name) {
        return Ok(Some(v));
    }
    match std::env::var(format!("{name}_FILE")) {
        Ok(path) => {
            let v = std::fs::read_to_string(&path).map_err(|e| {
                Error::config(format!("cannot read {name}_FILE ({path})")).with_source(e)
            })?;
            Ok(Some(v.trim().to_string()))
        }
        Err(_) => Ok(None),
    }
}

fn classify<E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static, R: fmt::Debug>(
    what: &str,
    e: SdkError<E, R>,
) -> Error {
    let (kind, detail) = match &e {
        // A connector error the client made itself (a bad TLS setup, a malformed endpoint) is
        // not going away by asking again; a refused or reset connection, a timeout is.
        SdkError::DispatchFailure(d) if d.is_user() => {
            (ErrorKind::Io, format!("{}", DisplayErrorContext(&e)))
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            (ErrorKind::Transient, format!("{}", DisplayErrorContext(&e)))
        }
        SdkError::ServiceError(se) => {
            let code = se.err().code().unwrap_or("").to_string();
            let kind = match code.as_str() {
                "NoSuchKey" | "NotFound" | "NoSuchUpload" => ErrorKind::NotFound,
                "InvalidRange" => ErrorKind::Corrupt,
                "SlowDown" | "RequestTimeout" | "InternalError" | "ServiceUnavailable"
                | "Throttling" => ErrorKind::Transient,
                _ => ErrorKind::Io,
            };
            (
                kind,
                format!("{code} {}", se.err().message().unwrap_or(""))
                    .trim()
                    .to_string(),
            )
        }
        _ => (ErrorKind::Io, format!("{}", DisplayErrorContext(&e))),
    };
    Error::new(kind, format!("S3 {what}: {detail}"))
}

/// Status-code based classification for responses whose error body names no code (HEAD, 5xx
/// from proxies).
fn classify_status<E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static>(
    what: &str,
    e: SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> Error {
    let status = match &e {
        SdkError::ServiceError(se) => Some(se.raw().status().as_u16()),
        _ => None,
    };
    let mut err = classify(what, e);
    // A HEAD's error has no body: without its status the message would end in nothing.
    if let Some(code) = status
        && err.message().trim_end().ends_with(':')
    {
        let why = match code {
            403 => "HTTP 403 Forbidden: the key was refused or may not use this bucket (check \
                    AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and the key's policy), or this \
                    machine's clock is 15 minutes or more from the server's"
                .to_string(),
            400 => "HTTP 400 Bad Request (a region the server does not answer to?)".to_string(),
            other => format!("HTTP {other}"),
        };
        err = Error::new(err.kind(), format!("{} {why}", err.message().trim_end()));
    }
    match status {
        Some(404) => err = Error::new(ErrorKind::NotFound, err.message().to_string()),
        Some(416) => err = Error::new(ErrorKind::Corrupt, err.message().to_string()),
        // 501: the server does not do this (a copy of a part): asking again changes nothing.
        Some(501) => err = Error::new(ErrorKind::Io, err.message().to_string()),
        Some(408 | 429 | 500..=599) => {
            err = Error::new(ErrorKind::Transient, err.message().to_string())
        }
        _ => {}
    }
    err
}

impl S3Store {
    /// Connects (lazily: no request is made until the first operation).
    pub fn new(cfg: &S3Config) -> Result<S3Store> {
        if cfg.bucket.is_empty() {
            return Err(Error::config("S3 bucket is empty"));
        }
        let prefix = cfg.prefix.trim_matches('/').to_string();
        if !prefix.is_empty() {
            check_key(&prefix)
                .map_err(|_| Error::config(format!("invalid S3 prefix {:?}", cfg.prefix)))?;
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("cairn-s3")
            .enable_all()
            .build()
            .map_err(|e| Error::io("starting the S3 runtime", e))?;
        let creds = Credentials::new(
            &cfg.access_key,
            &cfg.secret_key,
            cfg.session_token.clone(),
            None,
            "cairn",
        );
        let mut b = aws_sdk_s3::config::Builder::new()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(cfg.region.clone()))
            .credentials_provider(creds)
            .force_path_style(cfg.path_style)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(10))
                    // A request whose server went away mid-answer (a power cut: no reset ever
                    // arrives) must end well inside the retry budget, so that a retry can reach
                    // the server once it is back.
                    .read_timeout(Duration::from_secs(60))
                    .operation_attempt_timeout(Duration::from_secs(300))
                    .build(),
            );
        if let Some(ep) = &cfg.endpoint {
            b = b.endpoint_url(ep);
        }
        let counters = std::sync::Arc::new(Counters::default());
        b = b.interceptor(Counting(counters.clone()));
        let client = Client::from_conf(b.build());
        Ok(S3Store {
            client,
            counters,
            rt,
            bucket: cfg.bucket.clone(),
            prefix,
            endpoint: cfg.endpoint.clone(),
            region: cfg.region.clone(),
            retry: cfg.retry,
            server_name: cfg.server_name.clone(),
        })
    }

    /// Makes sure the bucket exists: `Ok(false)` when it did, `Ok(true)` when it was created
    /// (with `create`, by a key that may: S3's CreateBucket). A missing bucket this key may not
    /// create fails in one line naming the bucket and the `mc mb` command that makes it.
    pub fn ensure_bucket(&self, create: bool) -> Result<bool> {
        let what = format!("bucket {}", self.bucket);
        let head = self.rt.block_on(self.retried(&what, || async {
            self.client
                .head_bucket()
                .bucket(&self.bucket)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| classify_status(&format!("head {what}"), e))
        }));
        match head {
            Ok(()) => return Ok(false),
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let missing = |why: &str| {
            Error::new(
                ErrorKind::NotFound,
                format!(
                    "bucket {b} does not exist on {s}{why}: create it with `mc mb ALIAS/{b}` \
                     (ALIAS: mc's name for this server), then run cairn init again",
                    b = self.bucket,
                    s = self.server_name
                ),
            )
        };
        if !create {
            return Err(missing(""));
        }
        let made = self.rt.block_on(self.retried(&what, || async {
            self.client
                .create_bucket()
                .bucket(&self.bucket)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| classify_status(&format!("create {what}"), e))
        }));
        match made {
            Ok(()) => Ok(true),
            // Made meanwhile by another pod: it exists, which is all that was asked.
            Err(e) if e.message().contains("BucketAlreadyOwnedByYou") => Ok(false),
            Err(e) if e.kind() == ErrorKind::Io => Err(missing(" and this key may not create it")),
            Err(e) => Err(e),
        }
    }

    /// Runs one request of a multipart upload (or a pinning HEAD) under the store's policy.
    async fn retried<T, F, Fut>(&self, what: &str, f: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        self.retry.run_async(&self.server_name, what, f).await
    }

    fn full(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.prefix)
        }
    }

    /// Which server this is, for [`ServerObject::server`]: two stores with the same endpoint
    /// (or both on AWS in one region) can copy between their buckets.
    fn server(&self) -> String {
        match &self.endpoint {
            Some(ep) => ep.trim_end_matches('/').to_string(),
            None => format!("aws:{}", self.region),
        }
    }

    fn named(&self, key: &str) -> String {
        format!("{}/{}", self.bucket, self.full(key))
    }

    /// HeadObject.
    async fn head(&self, key: &str, what: &str) -> Result<HeadObjectOutput> {
        self.client
            .head_object()
            .bucket(&self.bucket)
            .key(self.full(key))
            .send()
            .await
            .map_err(|e| classify_status(what, e))
    }

    /// The size of an object, by a HEAD request.
    async fn head_size(&self, key: &str, what: &str) -> Result<u64> {
        let head = self.head(key, what).await?;
        Ok(head.content_length().unwrap_or(0).max(0) as u64)
    }

    /// GetObject, optionally of a byte range, with the body gathered into one buffer as it
    /// arrives (collecting it first and copying it out held every read twice at its peak). No
    /// more than `most` bytes are taken: a body longer than what was asked for is refused
    /// before it is held.
    async fn fetch(
        &self,
        key: &str,
        range: Option<String>,
        most: u64,
        what: &str,
    ) -> Result<Vec<u8>> {
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.full(key))
            .set_range(range)
            .send()
            .await
            .map_err(|e| classify_status(what, e))?;
        // The declared length only sizes the buffer, within what was asked for.
        let declared = out.content_length().unwrap_or(0).max(0) as u64;
        let mut buf = Vec::with_capacity(declared.min(most).min(PREALLOC_MAX) as usize);
        let mut body = out.body;
        while let Some(piece) = body
            .try_next()
            .await
            .map_err(|e| Error::new(ErrorKind::Transient, format!("S3 {what}: {e}")))?
        {
            if (buf.len() + piece.len()) as u64 > most {
                return Err(Error::corrupt(format!(
                    "S3 {what}: the server sent more than the {most} bytes asked for"
                )));
            }
            buf.extend_from_slice(&piece);
        }
        Ok(buf)
    }

    async fn put_async(&self, key: &str, data: Vec<u8>) -> Result<()> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(self.full(key))
            .body(ByteStream::from(data))
            .send()
            .await
            .map_err(|e| classify_status(&format!("put {}", self.named(key)), e))?;
        Ok(())
    }
}

impl Store for S3Store {
    /// The `Date` of the last response, if it came in the last minute, plus the time since;
    /// else that of a listing of at most one key, sent for it.
    fn clock(&self) -> Result<Option<jiff::Timestamp>> {
        let recent = || {
            let d = *self.counters.date.lock().expect("poisoned");
            d.filter(|(_, at)| at.elapsed() < Duration::from_secs(60))
                .and_then(|(t, at)| t.checked_add(at.elapsed()).ok())
        };
        if let Some(t) = recent() {
            return Ok(Some(t));
        }
        self.rt.block_on(async {
            self.client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(self.full(""))
                .max_keys(1)
                .send()
                .await
                .map_err(|e| classify_status(&format!("list {} (for its clock)", self.bucket), e))
        })?;
        let t = recent();
        if t.is_none() {
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| {
                tracing::warn!(bucket = %self.bucket, "the S3 server sends no Date header: leases are timed by this machine's clock");
            });
        }
        Ok(t)
    }

    fn request_stats(&self) -> Option<RequestStats> {
        let c = &self.counters;
        Some(RequestStats {
            requests: c.requests.load(Relaxed),
            gets: c.gets.load(Relaxed),
            puts: c.puts.load(Relaxed),
            heads: c.heads.load(Relaxed),
            deletes: c.deletes.load(Relaxed),
            bytes_read: c.bytes_read.load(Relaxed),
            bytes_written: c.bytes_written.load(Relaxed),
        })
    }

    fn server_object(&self, key: &str, pin: bool) -> Option<ServerObject> {
        let version = if pin {
            let what = format!("version of {}", self.named(key));
            let etag = self.rt.block_on(self.retried(&what, || async {
                self.head(key, &what)
                    .await?
                    .e_tag()
                    .map(str::to_string)
                    .ok_or_else(|| Error::new(ErrorKind::Io, format!("S3 {what}: no ETag")))
            }));
            // Without its version the object cannot be pinned, so it is not copied from.
            match etag {
                Ok(etag) => Some(etag),
                Err(e) => {
                    tracing::warn!(
                        "{e}; its bytes are read and sent, not copied inside the server"
                    );
                    return None;
                }
            }
        } else {
            None
        };
        Some(ServerObject {
            server: self.server(),
            bucket: self.bucket.clone(),
            key: self.full(key),
            version,
        })
    }

    fn put(&self, key: &str, data: &[u8]) -> Result<()> {
        check_key(key)?;
        self.rt.block_on(self.put_async(key, data.to_vec()))
    }

    fn get(&self, key: &str) -> Result<Vec<u8>> {
        check_key(key)?;
        let what = format!("get {}", self.named(key));
        self.rt.block_on(self.fetch(key, None, u64::MAX, &what))
    }

    fn size(&self, key: &str) -> Result<u64> {
        check_key(key)?;
        let what = format!("size of {}", self.named(key));
        self.rt.block_on(self.head_size(key, &what))
    }

    fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        check_key(key)?;
        let what = format!("get {} bytes {offset}+{len}", self.named(key));
        let end = offset
            .checked_add(len)
            .ok_or_else(|| Error::corrupt(format!("S3 {what}: range overflows")))?;
        self.rt.block_on(async {
            if len == 0 {
                // An empty range cannot be asked for; check existence and bounds instead.
                let size = self.head_size(key, &what).await?;
                return if offset <= size {
                    Ok(Vec::new())
                } else {
                    Err(Error::corrupt(format!(
                        "S3 {what}: outside the object of {size} bytes"
                    )))
                };
            }
            let range = Some(format!("bytes={offset}-{}", end - 1));
            let bytes = self.fetch(key, range, len, &what).await?;
            if bytes.len() as u64 != len {
                return Err(Error::corrupt(format!(
                    "S3 {what}: got {} bytes (range outside the object)",
                    bytes.len()
                )));
            }
            Ok(bytes)
        })
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        check_prefix(prefix)?;
        let full = self.full(prefix);
        let strip = if self.prefix.is_empty() {
            0
        } else {
            self.prefix.len() + 1
        };
        self.rt.block_on(async {
            let mut out = Vec::new();
            let mut token: Option<String> = None;
            loop {
                let page = self
                    .client
                    .list_objects_v2()
                    .bucket(&self.bucket)
                    .prefix(&full)
                    .set_continuation_token(token.take())
                    .send()
                    .await
                    .map_err(|e| classify_status(&format!("list {}/{full}", self.bucket), e))?;
                for obj in page.contents() {
                    let Some(k) = obj.key() else { continue };
                    if let Some(rel) = k.get(strip..).filter(|r| check_key(r).is_ok()) {
                        out.push(ObjectInfo {
                            key: rel.to_string(),
                            size: obj.size().unwrap_or(0) as u64,
                        });
                    }
                }
                match (page.is_truncated(), page.next_continuation_token()) {
                    (Some(true), Some(t)) => token = Some(t.to_string()),
                    _ => break,
                }
            }
            out.sort();
            Ok(out)
        })
    }

    fn delete(&self, key: &str) -> Result<()> {
        check_key(key)?;
        self.rt.block_on(async {
            match self
                .client
                .delete_object()
                .bucket(&self.bucket)
                .key(self.full(key))
                .send()
                .await
            {
                Ok(_) => Ok(()),
                Err(e) => {
                    let err = classify_status(&format!("delete {}", self.named(key)), e);
                    if err.kind() == ErrorKind::NotFound {
                        Ok(())
                    } else {
                        Err(err)
                    }
                }
            }
        })
    }

    /// Aborts the multipart uploads below `prefix` that were started more than `older_than`
    /// ago: a killed writer never completes nor aborts its upload, whose parts stay stored (and
    /// billed) until a lifecycle rule removes them. S3 does not say which process started an
    /// upload, nor when it last added a part, so the age alone decides.
    fn clean_temporaries(&self, prefix: &str, older_than: Duration) -> Result<Cleaned> {
        check_prefix(prefix)?;
        let full = self.full(prefix);
        let cutoff = std::time::SystemTime::now()
            .checked_sub(older_than)
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs() as i64);
        self.rt.block_on(async {
            let mut out = Cleaned::default();
            let (mut key_marker, mut id_marker) = (None::<String>, None::<String>);
            loop {
                let page = self
                    .client
                    .list_multipart_uploads()
                    .bucket(&self.bucket)
                    .prefix(&full)
                    .set_key_marker(key_marker.take())
                    .set_upload_id_marker(id_marker.take())
                    .send()
                    .await
                    .map_err(|e| {
                        classify_status(
                            &format!("list multipart uploads {}/{full}", self.bucket),
                            e,
                        )
                    })?;
                for u in page.uploads() {
                    let (Some(key), Some(id)) = (u.key(), u.upload_id()) else {
                        continue;
                    };
                    if u.initiated().is_none_or(|t| t.secs() > cutoff) {
                        continue;
                    }
                    let what = format!("abort multipart upload {}/{key}", self.bucket);
                    match self
                        .client
                        .abort_multipart_upload()
                        .bucket(&self.bucket)
                        .key(key)
                        .upload_id(id)
                        .send()
                        .await
                    {
                        Ok(_) => {
                            out.objects += 1;
                            tracing::info!(key, "aborted a dead writer's multipart upload");
                        }
                        Err(e) => {
                            let err = classify_status(&what, e);
                            if err.kind() != ErrorKind::NotFound {
                                return Err(err);
                            }
                        }
                    }
                }
                match (
                    page.is_truncated(),
                    page.next_key_marker(),
                    page.next_upload_id_marker(),
                ) {
                    (Some(true), Some(k), id) => {
                        key_marker = Some(k.to_string());
                        id_marker = id.map(str::to_string);
                    }
                    _ => break,
                }
            }
            Ok(out)
        })
    }

    fn create(&self, key: &str) -> Result<Box<dyn ObjectWriter + '_>> {
        check_key(key)?;
        Ok(Box::new(S3Writer {
            store: self,
            key: key.to_string(),
            buf: Vec::with_capacity(PART_SIZE),
            run: None,
            upload_id: None,
            parts: Vec::new(),
            inflight: Vec::new(),
            refused: std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false)),
            sent: 0,
            created: None,
            done: false,
            broken: false,
        }))
    }
}

/// Streams an object: a single PUT when it stays below one part, a multipart upload otherwise.
/// The object appears when the upload completes; an unfinished writer aborts its upload.
///
/// Bytes that the caller says are also in an object of the same server ([`write_copy`]) are
/// gathered into runs; a run of at least [`MIN_PART`] becomes an `UploadPartCopy` of that range
/// instead of an upload of its bytes, so the archive's stored frames never travel back up.
///
/// [`write_copy`]: ObjectWriter::write_copy
struct S3Writer<'a> {
    store: &'a S3Store,
    key: String,
    /// Bytes to send, less than one part.
    buf: Vec<u8>,
    /// Bytes that follow `buf` and can be copied inside the server.
    run: Option<Run>,
    upload_id: Option<String>,
    parts: Vec<CompletedPart>,
    inflight: Vec<tokio::task::JoinHandle<Result<CompletedPart>>>,
    /// Set once the server refused a copy: the rest is sent.
    refused: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Bytes handed to parts so far: the object's size once the upload is complete.
    sent: u64,
    /// When the upload was created, on the server's clock.
    created: Option<jiff::Timestamp>,
    done: bool,
    /// Set when a part was lost (its upload failed after its own retries): the object can no
    /// longer be completed, whatever a caller retries.
    broken: bool,
}

/// Where one part goes, and how it is retried.
struct PartTarget {
    client: Client,
    bucket: String,
    key: String,
    id: String,
    retry: RetryPolicy,
    server: String,
}

/// Uploads one part's bytes, retried.
async fn send_part(
    t: &PartTarget,
    number: i32,
    data: bytes::Bytes,
    what: &str,
) -> Result<CompletedPart> {
    let (client, bucket, key, id) = (&t.client, &t.bucket, &t.key, &t.id);
    t.retry
        .run_async(&t.server, what, || {
            let data = data.clone();
            async move {
                let out = client
                    .upload_part()
                    .bucket(bucket)
                    .key(key)
                    .upload_id(id)
                    .part_number(number)
                    .body(ByteStream::from(data))
                    .send()
                    .await
                    .map_err(|e| classify_status(what, e))?;
                Ok(CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(out.e_tag().map(str::to_string))
                    .build())
            }
        })
        .await
}

/// Contiguous bytes of one object on the server, held until they are copied or sent.
struct Run {
    src: ServerObject,
    offset: u64,
    data: Vec<u8>,
}

/// One part of a multipart upload.
enum Part {
    Upload(bytes::Bytes),
    /// A range of an object on the server (only while it has the version `if_match`, when
    /// pinned), with its bytes to send if the copy is refused.
    Copy {
        source: String,
        if_match: Option<String>,
        offset: u64,
        data: bytes::Bytes,
    },
}

impl S3Writer<'_> {
    fn start_part(&mut self, part: Part) -> Result<()> {
        let s = self.store;
        if self.upload_id.is_none() {
            let what = format!("create multipart upload {}", s.named(&self.key));
            let id = s.rt.block_on(s.retried(&what, || async {
                let out = s
                    .client
                    .create_multipart_upload()
                    .bucket(&s.bucket)
                    .key(s.full(&self.key))
                    .send()
                    .await
                    .map_err(|e| classify_status(&what, e))?;
                out.upload_id()
                    .map(str::to_string)
                    .ok_or_else(|| Error::new(ErrorKind::Io, format!("S3 {what}: no upload id")))
            }))?;
            self.upload_id = Some(id);
            // On the server's clock (the `Date` of the answer just received), to recognise the
            // object if the answer to its completion is lost.
            self.created = s.clock().ok().flatten();
        }
        let number = self.parts_started() + 1;
        if number > MAX_PARTS {
            return Err(Error::new(
                ErrorKind::Io,
                format!(
                    "S3 upload of {} needs more than {MAX_PARTS} parts",
                    s.named(&self.key)
                ),
            ));
        }
        let number = number as i32;
        let dest = s.named(&self.key);
        self.sent += match &part {
            Part::Upload(data) | Part::Copy { data, .. } => data.len() as u64,
        };
        let target = PartTarget {
            client: s.client.clone(),
            bucket: s.bucket.clone(),
            key: s.full(&self.key),
            id: self.upload_id.clone().expect("set above"),
            retry: s.retry,
            server: s.server_name.clone(),
        };
        let what = format!("upload part {number} of {}", s.named(&self.key));
        let refused = self.refused.clone();
        self.inflight.push(s.rt.spawn(async move {
            let upload = |data| send_part(&target, number, data, &what);
            let (source, if_match, offset, data) = match part {
                Part::Upload(data) => return upload(data).await,
                Part::Copy {
                    source,
                    if_match,
                    offset,
                    data,
                } => (source, if_match, offset, data),
            };
            if !refused.load(Relaxed) {
                let range = format!("bytes={offset}-{}", offset + data.len() as u64 - 1);
                let what = format!("copy part {number} of {dest}");
                let copied = target.retry.run_async(&target.server, &what, || {
                    let (client, bucket, key, id, what) =
                        (&target.client, &target.bucket, &target.key, &target.id, &what);
                    let (source, range, if_match) = (&source, &range, &if_match);
                    async move {
                        let out = client
                            .upload_part_copy()
                            .bucket(bucket)
                            .key(key)
                            .upload_id(id)
                            .part_number(number)
                            .copy_source(source)
                            .copy_source_range(range)
                            .set_copy_source_if_match(if_match.clone())
                            .send()
                            .await
                            .map_err(|e| classify_status(what, e))?;
                        // S3 may answer 200 with an error in the body: no ETag, no part.
                        let etag = out
                            .copy_part_result()
                            .and_then(|r| r.e_tag())
                            .ok_or_else(|| {
                                Error::new(ErrorKind::Io, format!("S3 {what}: the copy gave no ETag"))
                            })?;
                        Ok(CompletedPart::builder()
                            .part_number(number)
                            .e_tag(etag)
                            .build())
                    }
                })
                .await;
                match copied {
                    Ok(part) => return Ok(part),
                    // A server that did not answer within the budget is not one that refused.
                    Err(e) if e.kind() == ErrorKind::Unavailable => return Err(e),
                    // The caller's bytes are here: a server that cannot copy gets them sent.
                    Err(e) => {
                        if !refused.swap(true, Relaxed) {
                            tracing::warn!(object = %dest, source = %source, error = %e, "the server did not copy a part inside itself; the rest of the object is sent instead");
                        }
                    }
                }
            }
            upload(data).await
        }));
        while self.inflight.len() >= PARTS_IN_FLIGHT {
            self.join_oldest()?;
        }
        Ok(())
    }

    fn join_oldest(&mut self) -> Result<()> {
        let h = self.inflight.remove(0);
        let part =
            self.store.rt.block_on(h).map_err(|e| {
                Error::new(ErrorKind::Io, format!("S3 part upload task failed: {e}"))
            })??;
        self.parts.push(part);
        Ok(())
    }

    fn parts_started(&self) -> usize {
        self.parts.len() + self.inflight.len()
    }

    /// The size of the next part sent: see [`COPIES_UNTIL`].
    fn part_size(&self) -> usize {
        if self.parts_started() >= COPIES_UNTIL {
            2 * PART_SIZE
        } else {
            PART_SIZE
        }
    }

    /// Appends bytes to send, sending each full part.
    fn append(&mut self, mut data: &[u8]) -> Result<()> {
        while !data.is_empty() {
            let size = self.part_size();
            let n = data.len().min(size - self.buf.len());
            self.buf.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.buf.len() == size {
                let full = std::mem::replace(&mut self.buf, Vec::with_capacity(size));
                self.start_part(Part::Upload(full.into()))?;
            }
        }
        Ok(())
    }

    /// Ends the run: copied when it is long enough to be a part of its own, sent otherwise.
    fn settle(&mut self) -> Result<()> {
        let Some(run) = self.run.take() else {
            return Ok(());
        };
        // Every part but the last must be at least MIN_PART long, the one before a copy too:
        // a short one is topped up from the front of the run.
        let top_up = match self.buf.len() {
            0 => 0,
            n => MIN_PART.saturating_sub(n),
        };
        if run.data.len() < top_up + MIN_PART {
            return self.append(&run.data);
        }
        self.append(&run.data[..top_up])?;
        if !self.buf.is_empty() {
            let before = std::mem::replace(&mut self.buf, Vec::with_capacity(PART_SIZE));
            self.start_part(Part::Upload(before.into()))?;
        }
        let src = &run.src;
        let data = bytes::Bytes::from(run.data).slice(top_up..);
        self.start_part(Part::Copy {
            source: format!("{}/{}", src.bucket, src.key),
            if_match: src.version.clone(),
            offset: run.offset + top_up as u64,
            data,
        })
    }

    fn failed(&mut self, e: Error) -> std::io::Error {
        self.broken = true;
        std::io::Error::other(e)
    }
}

impl Write for S3Writer<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if let Err(e) = self.settle() {
            return Err(self.failed(e));
        }
        let n = data.len().min(self.part_size() - self.buf.len());
        if let Err(e) = self.append(&data[..n]) {
            return Err(self.failed(e));
        }
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl ObjectWriter for S3Writer<'_> {
    fn write_copy(&mut self, src: &ServerObject, offset: u64, data: &[u8]) -> std::io::Result<()> {
        let s = self.store;
        let itself = src.bucket == s.bucket && src.key == s.full(&self.key);
        if src.server != s.server()
            || itself
            || self.refused.load(Relaxed)
            || self.parts_started() >= COPIES_UNTIL
        {
            return self.write_all(data);
        }
        if let Some(run) = &mut self.run
            && run.src == *src
            && run.offset + run.data.len() as u64 == offset
            && run.data.len() + data.len() <= MAX_RUN
        {
            run.data.extend_from_slice(data);
            return Ok(());
        }
        if let Err(e) = self.settle() {
            return Err(self.failed(e));
        }
        self.run = Some(Run {
            src: src.clone(),
            offset,
            data: data.to_vec(),
        });
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        if self.broken {
            return Err(Error::new(
                ErrorKind::Io,
                format!(
                    "S3 upload of {}: a part was lost; write the object again",
                    self.store.named(&self.key)
                ),
            ));
        }
        if let Err(e) = self.settle() {
            self.broken = true;
            return Err(e);
        }
        if self.upload_id.is_none() {
            // The buffer is kept until the PUT succeeded, so that a retried finish sends it
            // again.
            let data = self.buf.clone();
            self.store
                .rt
                .block_on(self.store.put_async(&self.key, data))?;
            self.done = true;
            return Ok(());
        }
        let joined = (|| {
            if !self.buf.is_empty() {
                let last = std::mem::take(&mut self.buf);
                self.start_part(Part::Upload(last.into()))?;
            }
            while !self.inflight.is_empty() {
                self.join_oldest()?;
            }
            Ok(())
        })();
        if let Err(e) = joined {
            self.broken = true;
            return Err(e);
        }
        self.parts.sort_by_key(|p| p.part_number());
        let s = self.store;
        let what = format!("complete multipart upload {}", s.named(&self.key));
        let done = CompletedMultipartUpload::builder()
            .set_parts(Some(self.parts.clone()))
            .build();
        // A failure here leaves every part uploaded: a retry completes the same upload. An
        // answer lost on the way (a server restarted right after completing) makes the retry
        // find no such upload: the object is there if it has every byte sent.
        let id = self.upload_id.clone().expect("multipart");
        let (key, sent_bytes, parts) = (self.key.clone(), self.sent, self.parts.len());
        let created = self.created;
        let mut tried = false;
        let completed = s.rt.block_on(s.retried(&what, || {
            let again = std::mem::replace(&mut tried, true);
            let (done, id, what, key) = (done.clone(), id.clone(), &what, &key);
            async move {
                let sent = s
                    .client
                    .complete_multipart_upload()
                    .bucket(&s.bucket)
                    .key(s.full(key))
                    .upload_id(id)
                    .multipart_upload(done)
                    .send()
                    .await
                    .map_err(|e| classify_status(what, e));
                match sent {
                    Err(e) if again && e.kind() == ErrorKind::NotFound => {
                        // Ours only if it is a multipart object of as many parts and as many
                        // bytes, written since the upload began: not an older object of the
                        // same size under the same key (a rerun of the day).
                        let h = s.head(key, what).await?;
                        let ours = h.content_length() == Some(sent_bytes as i64)
                            && h.e_tag().is_some_and(|t| {
                                t.trim_matches('"').ends_with(&format!("-{parts}"))
                            })
                            && h.last_modified().is_some_and(|t| {
                                created.is_some_and(|c| t.secs() + 1 >= c.as_second())
                            });
                        if ours { Ok(()) } else { Err(e) }
                    }
                    other => other.map(|_| ()),
                }
            }
        }));
        completed?;
        self.done = true;
        Ok(())
    }
}

impl Drop for S3Writer<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        for h in self.inflight.drain(..) {
            h.abort();
        }
        if let Some(id) = self.upload_id.take() {
            // Without this the parts would linger, invisible but billed, until a lifecycle rule
            // or the next run's clean-up.
            let s = self.store;
            let what = format!("abort multipart upload {}", s.named(&self.key));
            let policy = RetryPolicy {
                budget: s.retry.budget.min(ABORT_BUDGET),
                ..s.retry
            };
            let r =
                s.rt.block_on(policy.run_async(&s.server_name, &what, || async {
                    match s
                        .client
                        .abort_multipart_upload()
                        .bucket(&s.bucket)
                        .key(s.full(&self.key))
                        .upload_id(&id)
                        .send()
                        .await
                        .map_err(|e| classify_status(&what, e))
                    {
                        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
                        other => other.map(|_| ()),
                    }
                }));
            if let Err(e) = r {
                tracing::warn!(key = %self.key, error = %e, "could not abort an unfinished multipart upload; the next run removes it");
            }
        }
    }
}
