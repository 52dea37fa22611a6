//! Where and how to reach the bucket. The credentials come from the environment or from a file
//! that a mounted Secret provides, and are kept out of `Debug`.

use std::fmt;

use crate::error::{Error, Result};
use crate::store::RetryPolicy;

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
    /// [`RetryStore`](crate::store::RetryStore) around this store applies to every other request.
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
