//! The [`Store`] operations of the S3 store: each a request (or a few) on the client, blocked on
//! the store's runtime, so the trait stays synchronous for every caller.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use super::client::S3Store;
use super::errors::classify_status;
use super::upload::S3Writer;
use crate::error::{Error, ErrorKind, Result};
use crate::store::{
    Cleaned, ObjectInfo, ObjectWriter, RequestStats, ServerObject, Store, check_key,
};

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
            copies: c.copies.load(Relaxed),
            bytes_copied: c.bytes_copied.load(Relaxed),
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
        self.list_keys(prefix)
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
        self.abort_dead_uploads(prefix, older_than)
    }

    fn create(&self, key: &str) -> Result<Box<dyn ObjectWriter + '_>> {
        check_key(key)?;
        Ok(Box::new(S3Writer::new(self, key)))
    }
}
