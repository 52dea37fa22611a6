//! The streaming writer of an S3 object: a single PUT when it stays below one part, a multipart
//! upload otherwise, its parts sent a few at a time. Bytes the caller says are also in an object
//! of the same server are gathered into runs that are copied inside the server instead of sent.

use std::io::Write;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};

use super::client::S3Store;
use super::errors::classify_status;
use super::part::{Part, PartTarget};
use crate::error::{Error, ErrorKind, Result};
use crate::store::{ObjectWriter, RetryPolicy, ServerObject, Store};

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
/// Parts uploaded at once by one writer.
const PARTS_IN_FLIGHT: usize = 3;
/// The longest an unfinished writer tries to abort its upload: past it the upload is left to
/// the next run's `clean_temporaries` rather than hold a failing night for another budget.
const ABORT_BUDGET: Duration = Duration::from_secs(30);

/// Streams an object: a single PUT when it stays below one part, a multipart upload otherwise.
/// The object appears when the upload completes; an unfinished writer aborts its upload.
///
/// Bytes that the caller says are also in an object of the same server ([`write_copy`]) are
/// gathered into runs; a run of at least [`MIN_PART`] becomes an `UploadPartCopy` of that range
/// instead of an upload of its bytes, so the archive's stored frames never travel back up.
///
/// [`write_copy`]: ObjectWriter::write_copy
pub(super) struct S3Writer<'a> {
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

/// Contiguous bytes of one object on the server, held until they are copied or sent.
struct Run {
    src: ServerObject,
    offset: u64,
    data: Vec<u8>,
}

impl<'a> S3Writer<'a> {
    /// A writer of `key` that has sent nothing yet.
    pub(super) fn new(store: &'a S3Store, key: &str) -> S3Writer<'a> {
        S3Writer {
            store,
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
        }
    }

    fn start_part(&mut self, part: Part) -> Result<()> {
        let s = self.store;
        if self.upload_id.is_none() {
            self.create_upload()?;
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
        self.inflight
            .push(s.rt.spawn(part.send(target, number, what, dest, refused)));
        while self.inflight.len() >= PARTS_IN_FLIGHT {
            self.join_oldest()?;
        }
        Ok(())
    }

    /// Creates the multipart upload when its first part is sent: an object that stays below
    /// one part is a single PUT instead (see `finish`).
    fn create_upload(&mut self) -> Result<()> {
        let s = self.store;
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

    /// Completes the multipart upload once every part is in.
    fn complete(&mut self) -> Result<()> {
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
        self.complete()
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
