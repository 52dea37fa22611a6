//! Listing: the keys below a prefix, and the multipart uploads a killed writer left behind, which
//! are aborted once they are old enough (S3 keeps their parts, and bills them, until then).

use std::time::Duration;

use super::client::S3Store;
use super::errors::classify_status;
use crate::error::{ErrorKind, Result};
use crate::store::{Cleaned, ObjectInfo, check_key, check_prefix};

impl S3Store {
    /// The objects below `prefix`, sorted, through every page of the listing; keys outside the
    /// store's prefix or not valid keys are left out.
    pub(super) fn list_keys(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
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

    /// Aborts the multipart uploads below `prefix` that were started more than `older_than` ago,
    /// for [`Store::clean_temporaries`](crate::store::Store::clean_temporaries): S3 does not say
    /// which process started an upload, nor when it last added a part, so the age alone decides.
    pub(super) fn abort_dead_uploads(&self, prefix: &str, older_than: Duration) -> Result<Cleaned> {
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
}
