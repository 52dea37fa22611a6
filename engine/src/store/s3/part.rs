//! One part of a multipart upload and how it reaches the server: its bytes uploaded, or a range
//! of an object already on the server copied inside it (`UploadPartCopy`), the bytes being sent
//! instead when the server refuses the copy. Each request is retried under the store's policy,
//! since a part cannot be replayed from outside the writer.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::CompletedPart;

use super::errors::classify_status;
use crate::error::{Error, ErrorKind, Result};
use crate::store::RetryPolicy;

/// Where one part goes, and how it is retried.
pub(super) struct PartTarget {
    pub(super) client: Client,
    pub(super) bucket: String,
    pub(super) key: String,
    pub(super) id: String,
    pub(super) retry: RetryPolicy,
    pub(super) server: String,
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

/// Copies `range` of object `source` inside the server as part `number`, retried; `if_match`
/// pins the source to the version it was read at.
async fn copy_part(
    t: &PartTarget,
    number: i32,
    source: &str,
    range: &str,
    if_match: &Option<String>,
    what: &str,
) -> Result<CompletedPart> {
    let (client, bucket, key, id) = (&t.client, &t.bucket, &t.key, &t.id);
    t.retry
        .run_async(&t.server, what, || async move {
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
        })
        .await
}

/// One part of a multipart upload.
pub(super) enum Part {
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

impl Part {
    /// Sends this part as part `number` of the upload at `target`: a copy is tried first unless
    /// the server already `refused` one, in which case (or when it refuses this one) its bytes
    /// are uploaded. `what` names the upload request, `dest` the object, in errors and logs.
    pub(super) async fn send(
        self,
        target: PartTarget,
        number: i32,
        what: String,
        dest: String,
        refused: Arc<AtomicBool>,
    ) -> Result<CompletedPart> {
        let upload = |data| send_part(&target, number, data, &what);
        let (source, if_match, offset, data) = match self {
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
            let copied = copy_part(&target, number, &source, &range, &if_match, &what).await;
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
    }
}
