//! The S3 store itself: its client (path-style where asked, checksums only where an operation
//! requires them, the SDK's own retries off), the runtime it blocks on, the bucket check of
//! `init`, and the requests on one object that the other files build on.

use std::fmt;
use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::operation::head_object::HeadObjectOutput;
use aws_sdk_s3::primitives::ByteStream;

use super::config::S3Config;
use super::counting::{Counters, Counting};
use super::errors::classify_status;
use crate::error::{Error, ErrorKind, Result};
use crate::store::{RetryPolicy, Store, check_key};

/// The most a read reserves before its body arrives, whatever length the server declares.
const PREALLOC_MAX: u64 = 64 << 20;

/// Objects in an S3 bucket below a prefix.
pub struct S3Store {
    pub(super) client: Client,
    pub(super) counters: std::sync::Arc<Counters>,
    pub(super) rt: tokio::runtime::Runtime,
    pub(super) bucket: String,
    pub(super) prefix: String,
    endpoint: Option<String>,
    region: String,
    pub(super) retry: RetryPolicy,
    pub(super) server_name: String,
}

/// What the store cost, for the logs: a run's requests per store at debug level.
impl Drop for S3Store {
    fn drop(&mut self) {
        if let Some(st) = self.request_stats() {
            tracing::debug!(bucket = %self.bucket, prefix = %self.prefix, requests = st.requests,
                gets = st.gets, puts = st.puts, heads = st.heads, deletes = st.deletes,
                bytes_read = st.bytes_read, bytes_written = st.bytes_written, copies = st.copies,
                bytes_copied = st.bytes_copied, "S3 requests made");
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
    pub(super) async fn retried<T, F, Fut>(&self, what: &str, f: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        self.retry.run_async(&self.server_name, what, f).await
    }

    pub(super) fn full(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.prefix)
        }
    }

    /// Which server this is, for [`ServerObject::server`]: two stores with the same endpoint
    /// (or both on AWS in one region) can copy between their buckets.
    pub(super) fn server(&self) -> String {
        match &self.endpoint {
            Some(ep) => ep.trim_end_matches('/').to_string(),
            None => format!("aws:{}", self.region),
        }
    }

    pub(super) fn named(&self, key: &str) -> String {
        format!("{}/{}", self.bucket, self.full(key))
    }

    /// HeadObject.
    pub(super) async fn head(&self, key: &str, what: &str) -> Result<HeadObjectOutput> {
        self.client
            .head_object()
            .bucket(&self.bucket)
            .key(self.full(key))
            .send()
            .await
            .map_err(|e| classify_status(what, e))
    }

    /// The size of an object, by a HEAD request.
    pub(super) async fn head_size(&self, key: &str, what: &str) -> Result<u64> {
        let head = self.head(key, what).await?;
        Ok(head.content_length().unwrap_or(0).max(0) as u64)
    }

    /// GetObject, optionally of a byte range, with the body gathered into one buffer as it
    /// arrives (collecting it first and copying it out held every read twice at its peak). No
    /// more than `most` bytes are taken: a body longer than what was asked for is refused
    /// before it is held.
    pub(super) async fn fetch(
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

    pub(super) async fn put_async(&self, key: &str, data: Vec<u8>) -> Result<()> {
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
