//! What is built from the configuration: the stores (with their retry policy, the S3 client and
//! its credentials from the environment), the offsite uploader, and the metrics sink. Kept apart
//! from [`crate::config`], which holds only the settings and their validation, so that reading
//! a configuration needs none of the things it describes.

use std::sync::Arc;
use std::time::Duration;

use crate::config::{MetricsConfig, OffsiteConfig, OffsiteKind, StoreConfig, StoreKind};
use crate::error::{Error, Result};
use crate::store::{LocalStore, RetryStore, S3Config, S3Store, Store, credential_from_env};

impl OffsiteConfig {
    /// The uploader these keys describe; a configuration error when none is chosen.
    pub fn uploader(&self) -> Result<Box<dyn crate::offsite::uploader::Uploader>> {
        use crate::offsite::uploader::{CommandUploader, Directory, Rclone};
        Ok(match self.uploader {
            None => {
                return Err(Error::config(
                    "offsite.uploader is not set (proton-drive, rclone, command or directory): there is no remote to copy to",
                ));
            }
            Some(OffsiteKind::ProtonDrive) => Box::new(crate::offsite::proton::ProtonDrive::new(
                self.proton_drive.clone(),
                self.remote.clone(),
                self.session_dir.clone(),
            )),
            Some(OffsiteKind::Rclone) => Box::new(Rclone {
                program: self.rclone.clone(),
                remote: self.remote.clone(),
                config: self.rclone_config.clone(),
                ..Rclone::default()
            }),
            Some(OffsiteKind::Command) => Box::new(CommandUploader {
                upload: self.upload.clone(),
                list: self.list.clone(),
                delete: self.delete.clone(),
            }),
            Some(OffsiteKind::Directory) => Box::new(Directory {
                root: self.path.clone().expect("validated"),
            }),
        })
    }
}

impl MetricsConfig {
    /// The sink these keys describe.
    pub fn sink(&self) -> crate::nightly::metrics::Sink {
        crate::nightly::metrics::Sink {
            pushgateway: self.pushgateway.clone(),
            auth: self
                .pushgateway_user
                .clone()
                .zip(self.pushgateway_password.clone())
                .map(|(user, password)| crate::nightly::metrics::BasicAuth { user, password }),
            textfile_dir: self.textfile_dir.clone(),
            job: self.job.clone(),
            instance: self.instance.clone(),
        }
    }
}

/// Makes sure the bucket of an S3 location exists, creating it with `create` where the key may
/// (`cairn init`; `cairn preflight` only looks): `Some(true)` when it was created,
/// `Some(false)` when it existed, `None` for a local location. A missing bucket that is not
/// made fails in one line naming it and the `mc mb` command.
pub fn ensure_bucket(cfg: &StoreConfig, section: &str, create: bool) -> Result<Option<bool>> {
    match cfg.kind {
        StoreKind::Local => Ok(None),
        StoreKind::S3 => S3Store::new(&s3_config(cfg, section)?)?
            .ensure_bucket(create)
            .map(Some),
    }
}

/// The S3 connection of a location, with the credentials from the environment.
fn s3_config(cfg: &StoreConfig, section: &str) -> Result<S3Config> {
    let bucket = cfg.bucket.clone().ok_or_else(|| {
        Error::config(format!(
            "{section}.bucket is required when {section}.kind = \"s3\""
        ))
    })?;
    let missing = || {
        Error::config(
            "S3 credentials missing: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY \
             (or AWS_ACCESS_KEY_ID_FILE and AWS_SECRET_ACCESS_KEY_FILE)",
        )
    };
    Ok(S3Config {
        endpoint: cfg.endpoint.clone(),
        region: cfg.region.clone(),
        bucket,
        prefix: cfg.prefix.clone(),
        path_style: cfg.path_style,
        access_key: credential_from_env("AWS_ACCESS_KEY_ID")?.ok_or_else(missing)?,
        secret_key: credential_from_env("AWS_SECRET_ACCESS_KEY")?.ok_or_else(missing)?,
        session_token: credential_from_env("AWS_SESSION_TOKEN")?,
        retry: cfg.retry_policy(),
        server_name: cfg.server_name(),
    })
}

/// Opens the object store a `[store]`-like section describes, with retries for transient
/// failures. A local directory is created if missing only with `create` (`cairn init`, the
/// exports); otherwise a missing one is a configuration error naming `section.path`.
pub fn open_store(cfg: &StoreConfig, section: &str, create: bool) -> Result<Arc<dyn Store>> {
    warn_about_retries(cfg, section);
    match cfg.kind {
        StoreKind::Local => {
            let path = cfg.path.as_ref().ok_or_else(|| {
                Error::config(format!(
                    "{section}.path is required when {section}.kind = \"local\""
                ))
            })?;
            let store = if create {
                LocalStore::open(path)
            } else {
                LocalStore::open_existing(path)
            }
            .map_err(|e| e.context(format!("{section}.path")))?;
            Ok(Arc::new(RetryStore::with_policy(
                store,
                cfg.retry_policy(),
                cfg.server_name(),
            )))
        }
        StoreKind::S3 => {
            let store = S3Store::new(&s3_config(cfg, section)?)?;
            Ok(Arc::new(RetryStore::with_policy(
                store,
                cfg.retry_policy(),
                cfg.server_name(),
            )))
        }
    }
}

/// Warns about retry settings that defeat the budget: a `retry_attempts` cap left from older
/// configurations (`retry_attempts = 5` gives up after about 3 s of waiting), or a budget that a
/// lease does not outlive (a refresh retried that long lands after the lease lapsed, and the run
/// loses it while only waiting).
fn warn_about_retries(cfg: &StoreConfig, section: &str) {
    let p = cfg.retry_policy();
    if cfg.retry_attempts.is_some() {
        let reach: Duration = (0..p.attempts.saturating_sub(1).min(64))
            .map(|i| p.base.saturating_mul(1 << i.min(20)).min(p.cap))
            .sum();
        if reach < p.budget / 2 {
            tracing::warn!(
                "{section}.retry_attempts = {} gives up after about {} s of waiting, long before \
                 {section}.retry_budget_secs ({} s): remove it to let the budget decide",
                p.attempts,
                reach.as_secs(),
                p.budget.as_secs()
            );
        }
    }
    let ttl = match section {
        "store" => Duration::from_secs(cfg.lease_ttl_secs),
        _ => crate::export::DAY_LEASE_TTL,
    };
    if p.budget > ttl / 2 {
        tracing::warn!(
            "{section}.retry_budget_secs ({} s) is more than half the lease's time to live ({} s): \
             an outage that long can cost the run its lease",
            p.budget.as_secs(),
            ttl.as_secs()
        );
    }
}
