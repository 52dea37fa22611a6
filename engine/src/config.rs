//! Configuration: one TOML file, every key overridable from the environment
//! (`CAIRN_<SECTION>_<KEY>`, e.g. `CAIRN_STORE_PATH`, `CAIRN_SOURCE_FOLDERS=a,b`) or the command
//! line (`--set section.key=value`). Precedence: command line, environment, file, defaults.
//! Secrets never live here: S3 credentials come from the standard AWS variables, the
//! Pushgateway's password from `CAIRN_PUSHGATEWAY_PASSWORD_FILE` (or `…_PASSWORD`), each into a
//! [`Secret`] that no `Debug` or report shows.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::store::{
    LocalStore, RetryPolicy, RetryStore, S3Config, S3Store, Store, credential_from_env,
};

/// `[source]`: what to back up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SourceConfig {
    /// The share's mount point.
    pub root: PathBuf,
    /// Folders below the root to back up. Each must exist and be readable: a configured folder
    /// that cannot be opened or listed fails the night (nothing is published).
    pub folders: Vec<String>,
    /// Folders of `folders` that may be absent: one that does not exist is left out of the
    /// snapshot without a warning (one that exists and cannot be read still fails the night).
    pub optional_folders: Vec<String>,
    /// Exclude patterns: a bare name matches at any depth, a pattern with `/` matches the path
    /// relative to the root.
    pub exclude: Vec<String>,
    /// Stay on the filesystem of each folder.
    pub one_file_system: bool,
}

impl Default for SourceConfig {
    fn default() -> Self {
        SourceConfig {
            root: PathBuf::from("/shared"),
            folders: vec!["notetaking".into(), "images".into(), "backup".into()],
            optional_folders: Vec::new(),
            exclude: vec![".DS_Store".into(), "Thumbs.db".into()],
            one_file_system: true,
        }
    }
}

/// Which backend a location uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// A directory on a mounted filesystem.
    Local,
    /// An S3 bucket (MinIO in production).
    S3,
}

/// `[store]` and `[exports]`: a location for objects.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Backend.
    pub kind: StoreKind,
    /// Directory, for `kind = "local"`.
    pub path: Option<PathBuf>,
    /// S3 endpoint URL.
    pub endpoint: Option<String>,
    /// S3 region.
    pub region: String,
    /// S3 bucket.
    pub bucket: Option<String>,
    /// Key prefix inside the bucket.
    pub prefix: String,
    /// Path-style S3 addressing (MinIO, Garage).
    pub path_style: bool,
    /// Daily exports to keep (only meaningful in `[exports]`).
    pub keep_daily: u32,
    /// The bytes the server holding the exports (and the store, if it shares it) has: published
    /// with the export stage, so that an alert warns before the daily archives fill it (only
    /// meaningful in `[exports]`).
    pub capacity_bytes: Option<u64>,
    /// Tries of a store request that fails transiently, the first included (default: as many
    /// as `retry_budget_secs` allows).
    pub retry_attempts: Option<u32>,
    /// The first wait before a retry, in milliseconds, doubled for each further one (default:
    /// 100 local, 200 S3).
    pub retry_base_ms: Option<u64>,
    /// The longest wait before a retry, in milliseconds (default: 5,000 local, 10,000 S3).
    pub retry_max_ms: Option<u64>,
    /// How long one request keeps being retried, in seconds (default: 30 local; 300 S3, which
    /// outlasts the reboot of a small server such as a MinIO on a Raspberry Pi).
    pub retry_budget_secs: Option<u64>,
    /// How long a repository lease lives without a refresh (only meaningful in `[store]`): a
    /// holder that died on another machine blocks others at most this long.
    pub lease_ttl_secs: u64,
}

impl StoreConfig {
    /// How transient failures of every request to this location are retried: the configured
    /// values, or the backend's defaults (an object store over a network deserves more
    /// patience: a few minutes, so that a night survives its server's reboot).
    pub fn retry_policy(&self) -> RetryPolicy {
        let (base, max, budget) = match self.kind {
            StoreKind::Local => (100, 5_000, 30),
            StoreKind::S3 => (200, 10_000, 300),
        };
        RetryPolicy {
            attempts: self.retry_attempts.unwrap_or(u32::MAX),
            base: Duration::from_millis(self.retry_base_ms.unwrap_or(base)),
            cap: Duration::from_millis(self.retry_max_ms.unwrap_or(max)),
            budget: Duration::from_secs(self.retry_budget_secs.unwrap_or(budget)),
        }
    }

    /// The location as errors name it: `S3 server http://10.10.10.209:9000 (bucket b)`, or the
    /// local directory.
    pub fn server_name(&self) -> String {
        match self.kind {
            StoreKind::S3 => format!(
                "S3 server {} (bucket {})",
                self.endpoint.as_deref().unwrap_or("(AWS default)"),
                self.bucket.as_deref().unwrap_or("")
            ),
            StoreKind::Local => match &self.path {
                Some(p) => format!("store directory {}", p.display()),
                None => "store directory".into(),
            },
        }
    }

    fn validate(&self, section: &str) -> Result<()> {
        let RetryPolicy {
            attempts,
            base,
            cap: max,
            budget,
        } = self.retry_policy();
        if let Some(attempts) = self.retry_attempts
            && !(1..=1000).contains(&attempts)
        {
            return Err(Error::config(format!(
                "{section}.retry_attempts {attempts} is outside 1..=1000"
            )));
        }
        let _ = attempts;
        if budget > Duration::from_secs(3600) {
            return Err(Error::config(format!(
                "{section}.retry_budget_secs {} is above 3600",
                budget.as_secs()
            )));
        }
        if !(10..=3600).contains(&self.lease_ttl_secs) {
            return Err(Error::config(format!(
                "{section}.lease_ttl_secs {} is outside 10..=3600",
                self.lease_ttl_secs
            )));
        }
        if base.is_zero() || base > max || max > Duration::from_secs(300) {
            return Err(Error::config(format!(
                "{section}.retry_base_ms and retry_max_ms must satisfy 0 < base <= max <= 300000 (they are {} and {})",
                base.as_millis(),
                max.as_millis()
            )));
        }
        Ok(())
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            kind: StoreKind::Local,
            path: None,
            endpoint: None,
            region: "us-east-1".into(),
            bucket: None,
            prefix: String::new(),
            path_style: true,
            keep_daily: 14,
            capacity_bytes: None,
            retry_attempts: None,
            retry_base_ms: None,
            retry_max_ms: None,
            retry_budget_secs: None,
            lease_ttl_secs: 900,
        }
    }
}

/// `[state]`: the state volume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    /// Holds the RocksDB catalog and the lock.
    pub dir: PathBuf,
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            dir: PathBuf::from("/state"),
        }
    }
}

/// `[backup]`: tuning.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackupConfig {
    /// zstd level for stored chunks and trees.
    pub compression: i32,
    /// Ignore inode numbers in the files cache (filesystems without stable inodes).
    pub ignore_inode: bool,
    /// Ignore ctimes in the files cache.
    pub ignore_ctime: bool,
    /// Target pack size for a new repository, in MiB.
    pub pack_size_mib: u64,
    /// Temporary objects that a killed writer left (in the store and the exports) are removed
    /// at the start of `cairn run` once this many seconds old. Must exceed the longest write:
    /// on S3 the age alone tells a dead upload from a live one.
    pub stale_temp_secs: u64,
}

impl Default for BackupConfig {
    fn default() -> Self {
        BackupConfig {
            compression: 3,
            ignore_inode: false,
            ignore_ctime: false,
            pack_size_mib: 16,
            stale_temp_secs: 3600,
        }
    }
}

/// `[retention]`: which snapshots `cairn forget` keeps (see [`crate::prune::forget::Policy`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// The newest snapshot of each of this many most recent days with one (the exports keep
    /// the same number of daily archives by default).
    pub keep_daily: u32,
    /// The newest snapshot of each of this many most recent ISO weeks with one.
    pub keep_weekly: u32,
    /// The newest snapshot of each of this many most recent months with one.
    pub keep_monthly: u32,
    /// Every snapshot taken less than this long before the newest one: `"48h"`, `"14d"`.
    pub keep_within: Option<String>,
    /// `cairn run` forgets and collects garbage (`cairn prune`) after the export. Off by
    /// default: the nightly key may not delete (docs/OPERATIONS.md).
    pub prune_in_run: bool,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            keep_daily: 14,
            keep_weekly: 0,
            keep_monthly: 0,
            keep_within: None,
            prune_in_run: false,
        }
    }
}

impl RetentionConfig {
    /// The policy these keys describe.
    pub fn policy(&self) -> Result<crate::prune::forget::Policy> {
        Ok(crate::prune::forget::Policy {
            daily: self.keep_daily,
            weekly: self.keep_weekly,
            monthly: self.keep_monthly,
            within: self
                .keep_within
                .as_deref()
                .map(crate::prune::forget::parse_within)
                .transpose()?,
        })
    }
}

/// Which client the offsite stage uploads with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OffsiteKind {
    /// Proton's official Drive CLI, `proton-drive` (the default for Proton Drive).
    #[serde(rename = "proton-drive")]
    ProtonDrive,
    /// Any rclone remote (`protondrive:` among them).
    Rclone,
    /// A client run from argument templates.
    Command,
    /// A directory (tests, a NAS mirror).
    Directory,
}

/// `[offsite]`: the best-effort copy of the daily archives to a second place.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OffsiteConfig {
    /// The client; unset, `cairn offsite sync` refuses to run.
    pub uploader: Option<OffsiteKind>,
    /// rclone: `remote:path` the days go below; proton-drive: the folder, `/my-files/…`.
    pub remote: String,
    /// proton-drive: the binary.
    pub proton_drive: PathBuf,
    /// proton-drive: its state directory (`PROTON_DRIVE_CACHE_DIR`), where its session lives:
    /// the session volume.
    pub session_dir: PathBuf,
    /// The remote's storage quota in bytes, if known: published, so that an alert warns before
    /// the copies fill it.
    pub quota_bytes: Option<u64>,
    /// rclone: the binary.
    pub rclone: PathBuf,
    /// rclone: a config file (the session volume's) instead of rclone's default.
    pub rclone_config: Option<PathBuf>,
    /// directory: the root the days go below.
    pub path: Option<PathBuf>,
    /// command: uploads `{file}` to `{dest}` (`DATE/NAME`).
    pub upload: Vec<String>,
    /// command: lists `{dir}`, a line per file: `SIZE NAME [SHA256]`.
    pub list: Vec<String>,
    /// command: deletes the day folder `{dir}` (only with `keep_daily`).
    pub delete: Vec<String>,
    /// A client that runs longer than this on one file is killed.
    pub timeout_secs: u64,
    /// No day is started after this long.
    pub budget_secs: u64,
    /// Attempts per day.
    pub attempts: u32,
    /// The first wait before another attempt, doubled each time.
    pub retry_wait_secs: u64,
    /// Days kept on the remote; 0 (the default) deletes nothing there.
    pub keep_daily: u32,
    /// Where a client that needs a file gets its copy (one at a time, removed after).
    pub scratch_dir: PathBuf,
}

impl Default for OffsiteConfig {
    fn default() -> Self {
        OffsiteConfig {
            uploader: None,
            remote: "protondrive:Backups/homelab/shared-archives".into(),
            rclone: "rclone".into(),
            proton_drive: "proton-drive".into(),
            session_dir: "/session".into(),
            quota_bytes: None,
            rclone_config: None,
            path: None,
            upload: Vec::new(),
            list: Vec::new(),
            delete: Vec::new(),
            timeout_secs: 3600,
            budget_secs: 4 * 3600,
            attempts: 3,
            retry_wait_secs: 30,
            keep_daily: 0,
            scratch_dir: "/tmp/cairn-offsite".into(),
        }
    }
}

impl OffsiteConfig {
    fn validate(&self) -> Result<()> {
        if !(1..=86_400).contains(&self.timeout_secs) {
            return Err(Error::config(format!(
                "offsite.timeout_secs {} is outside 1..=86400",
                self.timeout_secs
            )));
        }
        if !(1..=10).contains(&self.attempts) {
            return Err(Error::config(format!(
                "offsite.attempts {} is outside 1..=10",
                self.attempts
            )));
        }
        if !(1..=7 * 86_400).contains(&self.budget_secs) {
            return Err(Error::config(format!(
                "offsite.budget_secs {} is outside 1..=604800",
                self.budget_secs
            )));
        }
        if self.retry_wait_secs > 3600 {
            return Err(Error::config(format!(
                "offsite.retry_wait_secs {} is above 3600",
                self.retry_wait_secs
            )));
        }
        // `name:path` or `:backend:path`, the name of letters, digits, `_`, `-`, `.`: an rclone
        // connection string (`:s3,secret_access_key=…:`) would put a secret in every report.
        let name = self
            .remote
            .strip_prefix(':')
            .unwrap_or(&self.remote)
            .split_once(':')
            .map(|(n, _)| n);
        let remote_ok = name.is_some_and(|n| {
            !n.is_empty()
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_-. ".contains(&b))
        });
        // A folder of the Proton Drive CLI: `/section/name/...`, no empty or dot segment.
        // At least one folder below the section (`/my-files` itself is the user's whole drive,
        // whose date-named folders keep_daily would take for days).
        let segments: Vec<&str> = self
            .remote
            .strip_prefix('/')
            .unwrap_or("")
            .trim_end_matches('/')
            .split('/')
            .collect();
        let folder_ok = self.remote.starts_with('/')
            && segments.len() >= 2
            && segments
                .iter()
                .all(|seg| !seg.is_empty() && *seg != "." && *seg != "..");
        match self.uploader {
            Some(OffsiteKind::ProtonDrive) if !folder_ok => Err(Error::config(format!(
                "offsite.remote must be a Proton Drive folder below a section, like \"/my-files/Backups/homelab/shared-archives\", with uploader = \"proton-drive\", not {:?}",
                self.remote.split(',').next().unwrap_or("")
            ))),
            Some(OffsiteKind::Rclone) if !remote_ok => Err(Error::config(format!(
                "offsite.remote must be an rclone remote, name:path (options and credentials belong in the rclone config or RCLONE_* variables), not {:?}",
                self.remote.split(',').next().unwrap_or("")
            ))),
            Some(OffsiteKind::Directory) if self.path.is_none() => Err(Error::config(
                "offsite.path is required when offsite.uploader = \"directory\"",
            )),
            Some(OffsiteKind::Command) if self.upload.is_empty() || self.list.is_empty() => {
                Err(Error::config(
                    "offsite.upload and offsite.list are required when offsite.uploader = \"command\"",
                ))
            }
            Some(OffsiteKind::Command) if self.keep_daily > 0 && self.delete.is_empty() => Err(
                Error::config("offsite.keep_daily needs offsite.delete with the command uploader"),
            ),
            _ => Ok(()),
        }
    }

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

pub use crate::secret::Secret;

/// The variable that holds the Pushgateway's password; `…_FILE` names a file holding it.
pub const PUSHGATEWAY_PASSWORD: &str = "CAIRN_PUSHGATEWAY_PASSWORD";

/// `name`'s value in `env`, or the trimmed content of the file `name_FILE` names (a mounted
/// Secret), as `credential_from_env` reads the S3 keys. Errors name the variable and the path,
/// never the content.
fn secret_from(env: &[(String, String)], name: &str) -> Result<Option<Secret>> {
    let var = |n: &str| env.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    if let Some(v) = var(name) {
        return Ok(Some(Secret::new(v)));
    }
    let Some(path) = var(&format!("{name}_FILE")) else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Error::config(format!("cannot read {name}_FILE ({path})")).with_source(e))?;
    Ok(Some(Secret::new(text.trim())))
}

/// `[metrics]`: where each stage publishes its figures for Prometheus.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// `http://host:port` of a Pushgateway (pushed with POST on success and on failure).
    pub pushgateway: Option<String>,
    /// The basic-auth user of a Pushgateway that asks for one; the password comes from
    /// `CAIRN_PUSHGATEWAY_PASSWORD_FILE` (or `CAIRN_PUSHGATEWAY_PASSWORD`), never from here.
    pub pushgateway_user: Option<String>,
    /// The password, from the environment (skipped by serde: in the file it is an unknown key).
    #[serde(skip)]
    pub pushgateway_password: Option<Secret>,
    /// A node-exporter textfile collector directory (`cairn_<stage>.prom`).
    pub textfile_dir: Option<PathBuf>,
    /// The `job` grouping label.
    pub job: String,
    /// The `instance` grouping label: fixed, since pod names change every night.
    pub instance: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            pushgateway: None,
            pushgateway_user: None,
            pushgateway_password: None,
            textfile_dir: None,
            job: "cairn".into(),
            instance: "shared-subfolders".into(),
        }
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

    fn validate(&self) -> Result<()> {
        if let Some(u) = &self.pushgateway {
            crate::nightly::metrics::check_url(u)?;
        }
        match (&self.pushgateway_user, &self.pushgateway_password) {
            // RFC 7617: the user ends at the first colon.
            (Some(u), _) if u.is_empty() || u.contains(':') || u.chars().any(char::is_control) => {
                Err(Error::config(format!(
                    "metrics.pushgateway_user {u:?} must be a non-empty name without ':'"
                )))
            }
            (Some(_), None) => Err(Error::config(format!(
                "metrics.pushgateway_user is set but no password: set {PUSHGATEWAY_PASSWORD}_FILE \
                 (a mounted secret) or {PUSHGATEWAY_PASSWORD}"
            ))),
            (None, Some(_)) => Err(Error::config(format!(
                "{PUSHGATEWAY_PASSWORD} (or _FILE) is set but metrics.pushgateway_user is not"
            ))),
            _ => Ok(()),
        }
    }
}

/// `[gc]`: how `cairn gc` deletes and repacks packs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GcConfig {
    /// How long a condemned pack waits before it is deleted: `"24h"`, `"2d"`; at least
    /// [`MIN_GRACE`] unless `unsafe_short_grace`.
    pub grace: String,
    /// A pack whose unneeded bytes are at least this percentage of it is repacked (1 to 100).
    pub repack_dead_percent: u8,
    /// Allows a grace below [`MIN_GRACE`] (`"0h"` deletes in the same run): only for a
    /// repository no backup ever runs beside a gc of (tests, a one-off clean-up by hand).
    pub unsafe_short_grace: bool,
}

/// The shortest `gc.grace`: the last line of defence for a backup whose lease lapsed while it
/// was stalled (a paused pod), which may still commit a snapshot that needs what a gc
/// condemned meanwhile; the grace must outlast any such stall.
pub const MIN_GRACE: Duration = Duration::from_secs(3600);

impl Default for GcConfig {
    fn default() -> Self {
        GcConfig {
            grace: "24h".into(),
            repack_dead_percent: 50,
            unsafe_short_grace: false,
        }
    }
}

impl GcConfig {
    /// The grace period.
    pub fn grace(&self) -> Result<Duration> {
        let d = crate::prune::forget::parse_span("gc.grace", &self.grace, true)?;
        let d = Duration::from_secs(d.as_secs().unsigned_abs());
        if d < MIN_GRACE && !self.unsafe_short_grace {
            return Err(Error::config(format!(
                "gc.grace {} is shorter than the 1h minimum: a backup stalled past its lease \
                 could commit a snapshot whose packs were deleted (gc.unsafe_short_grace = true \
                 allows it where no backup ever runs beside a gc)",
                self.grace
            )));
        }
        Ok(d)
    }

    fn validate(&self) -> Result<()> {
        // Only the spelling here: the minimum is gc's and prune's to enforce, so that a grace
        // set too short never stops a restore.
        crate::prune::forget::parse_span("gc.grace", &self.grace, true)?;
        if !(1..=100).contains(&self.repack_dead_percent) {
            return Err(Error::config(format!(
                "gc.repack_dead_percent {} is outside 1..=100",
                self.repack_dead_percent
            )));
        }
        Ok(())
    }
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// IANA time zone that decides which day a run belongs to.
    pub timezone: String,
    /// What to back up.
    pub source: SourceConfig,
    /// Where chunks, packs, trees and snapshots live.
    pub store: StoreConfig,
    /// Where the daily archives go.
    pub exports: StoreConfig,
    /// The state volume.
    pub state: StateConfig,
    /// Tuning.
    pub backup: BackupConfig,
    /// Snapshot retention.
    pub retention: RetentionConfig,
    /// Garbage collection.
    pub gc: GcConfig,
    /// The offsite copy.
    pub offsite: OffsiteConfig,
    /// Metrics for Prometheus.
    pub metrics: MetricsConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            timezone: "UTC".into(),
            source: SourceConfig::default(),
            store: StoreConfig {
                path: Some("/var/lib/cairn/store".into()),
                ..StoreConfig::default()
            },
            exports: StoreConfig {
                path: Some("/var/lib/cairn/exports".into()),
                ..StoreConfig::default()
            },
            state: StateConfig::default(),
            backup: BackupConfig::default(),
            retention: RetentionConfig::default(),
            gc: GcConfig::default(),
            offsite: OffsiteConfig::default(),
            metrics: MetricsConfig::default(),
        }
    }
}

const SECTIONS: [&str; 9] = [
    "source",
    "store",
    "exports",
    "state",
    "backup",
    "retention",
    "gc",
    "offsite",
    "metrics",
];
const LIST_KEYS: [&str; 3] = [
    "source.folders",
    "source.optional_folders",
    "source.exclude",
];

/// Parses an override value: TOML when it is a valid TOML value, a comma list for list keys,
/// otherwise a plain string (so `CAIRN_STATE_DIR=/state` needs no quotes).
fn parse_value(dotted: &str, raw: &str) -> toml::Value {
    if let Ok(t) = toml::from_str::<toml::Table>(&format!("v = {raw}"))
        && let Some(v) = t.get("v")
    {
        return v.clone();
    }
    if LIST_KEYS.contains(&dotted) {
        return toml::Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| toml::Value::String(s.into()))
                .collect(),
        );
    }
    toml::Value::String(raw.to_string())
}

fn set_dotted(table: &mut toml::Table, dotted: &str, value: toml::Value) -> Result<()> {
    match dotted.split_once('.') {
        Some((section, key)) if SECTIONS.contains(&section) && !key.contains('.') => {
            let sec = table
                .entry(section.to_string())
                .or_insert_with(|| toml::Value::Table(Default::default()))
                .as_table_mut()
                .ok_or_else(|| Error::config(format!("[{section}] must be a table")))?;
            sec.insert(key.to_string(), value);
            Ok(())
        }
        None if !SECTIONS.contains(&dotted) => {
            table.insert(dotted.to_string(), value);
            Ok(())
        }
        _ => Err(Error::config(format!(
            "{dotted:?} is not a configuration key"
        ))),
    }
}

/// Top-level keys (outside any section).
const TOP_KEYS: [&str; 1] = ["timezone"];

/// Maps `CAIRN_STORE_PATH_STYLE` to `store.path_style`. Variables that name no section and no
/// top-level key (`CAIRN_CONFIG`, `CAIRN_LOG`, other tools' `CAIRN_*`) are not configuration;
/// a variable that names a section but an unknown key is, and fails as a typo should.
fn env_key(var: &str) -> Option<String> {
    let rest = var.strip_prefix("CAIRN_")?.to_ascii_lowercase();
    for s in SECTIONS {
        if let Some(key) = rest.strip_prefix(s).and_then(|k| k.strip_prefix('_')) {
            return Some(format!("{s}.{key}"));
        }
    }
    TOP_KEYS.contains(&rest.as_str()).then_some(rest)
}

/// The largest config file read: a real one is a few KiB. Anything larger (a wrong path,
/// `/dev/zero`) is refused after reading at most this much.
pub const MAX_CONFIG_LEN: u64 = 1 << 20;

/// Reads a config file of at most [`MAX_CONFIG_LEN`] bytes (through `take`, so that a device or
/// a growing file cannot make cairn read without end).
fn read_config_file(path: &Path) -> Result<String> {
    use std::io::Read;
    let unreadable = |e: std::io::Error| {
        Error::config(format!("cannot read config file {}", path.display())).with_source(e)
    };
    let file = std::fs::File::open(path).map_err(unreadable)?;
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_LEN + 1)
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    if bytes.len() as u64 > MAX_CONFIG_LEN {
        return Err(Error::config(format!(
            "config file {} is larger than 1 MiB; is it the right file?",
            path.display()
        )));
    }
    String::from_utf8(bytes)
        .map_err(|_| Error::config(format!("config file {} is not UTF-8 text", path.display())))
}

/// One line naming the file, the line and column, and what is wrong; the TOML crate's own
/// message spans several lines with a snippet of the file.
fn toml_error(path: &Path, text: &str, e: &toml::de::Error) -> Error {
    let at = match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!(", line {line}, column {column}")
        }
        None => String::new(),
    };
    let message = e.message().trim().replace('\n', "; ");
    Error::config(format!("config file {}{at}: {message}", path.display()))
}

impl Config {
    /// Loads `file` (or the defaults), then applies `env` (`CAIRN_*` pairs) and `sets`
    /// (`section.key=value`), and validates the result.
    pub fn load(file: Option<&Path>, env: &[(String, String)], sets: &[String]) -> Result<Config> {
        let mut table = match file {
            Some(path) => {
                let text = read_config_file(path)?;
                toml::from_str::<toml::Table>(&text).map_err(|e| toml_error(path, &text, &e))?
            }
            None => toml::Table::new(),
        };
        for (var, raw) in env {
            if let Some(dotted) = env_key(var) {
                set_dotted(&mut table, &dotted, parse_value(&dotted, raw))
                    .map_err(|e| e.context(format!("environment variable {var}")))?;
            }
        }
        for s in sets {
            let (k, v) = s
                .split_once('=')
                .ok_or_else(|| Error::config(format!("--set {s:?}: expected section.key=value")))?;
            // The key alone in the message: the value may be a URL with a password in it.
            set_dotted(&mut table, k.trim(), parse_value(k.trim(), v.trim()))
                .map_err(|e| e.context(format!("--set {}", k.trim())))?;
        }
        let mut cfg: Config =
            toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| {
                    Error::config(format!("invalid configuration: {}", e.message()))
                })?;
        cfg.metrics.pushgateway_password = secret_from(env, PUSHGATEWAY_PASSWORD)?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<()> {
        if self.source.folders.is_empty() {
            return Err(Error::config("source.folders is empty: nothing to back up"));
        }
        for (i, f) in self.source.folders.iter().enumerate() {
            if !crate::format::tree::valid_name(f.as_bytes()) {
                return Err(Error::config(format!(
                    "source.folders: {f:?} must be a single folder name"
                )));
            }
            // The root tree would hold the name twice, which every reader refuses.
            if self.source.folders[..i].contains(f) {
                return Err(Error::config(format!(
                    "source.folders: {f:?} is listed twice"
                )));
            }
        }
        for f in &self.source.optional_folders {
            if !self.source.folders.contains(f) {
                return Err(Error::config(format!(
                    "source.optional_folders: {f:?} is not one of source.folders"
                )));
            }
        }
        if !(1..=22).contains(&self.backup.compression) {
            return Err(Error::config(format!(
                "backup.compression {} is outside 1..=22",
                self.backup.compression
            )));
        }
        if !(4..=64).contains(&self.backup.pack_size_mib) {
            return Err(Error::config(format!(
                "backup.pack_size_mib {} is outside 4..=64",
                self.backup.pack_size_mib
            )));
        }
        self.store.validate("store")?;
        self.exports.validate("exports")?;
        self.time_zone()?;
        self.retention.policy()?;
        self.gc.validate()?;
        self.offsite.validate()?;
        self.metrics.validate()?;
        crate::backup::scan::Excludes::new(&self.source.exclude)?;
        Ok(())
    }

    /// The configured time zone.
    pub fn time_zone(&self) -> Result<jiff::tz::TimeZone> {
        jiff::tz::TimeZone::get(&self.timezone).map_err(|e| {
            Error::config(format!("unknown time zone {:?}", self.timezone)).with_source(e)
        })
    }

    /// The day (`YYYY-MM-DD`) that `t` falls on in the configured time zone.
    pub fn date_of(&self, t: jiff::Timestamp) -> Result<String> {
        Ok(t.to_zoned(self.time_zone()?).date().to_string())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_apply_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "[source]\nroot = \"/a\"\n[store]\npath = \"/s\"\n").unwrap();
        let env = vec![
            ("CAIRN_SOURCE_ROOT".to_string(), "/b".to_string()),
            ("CAIRN_SOURCE_FOLDERS".to_string(), "x, y".to_string()),
            ("CAIRN_BACKUP_COMPRESSION".to_string(), "5".to_string()),
            ("CAIRN_STORE_PATH_STYLE".to_string(), "false".to_string()),
            ("CAIRN_CONFIG".to_string(), "ignored".to_string()),
            (
                "CAIRN_S3_TEST_BUCKET".to_string(),
                "not configuration".to_string(),
            ),
            ("CAIRN_TIMEZONE".to_string(), "Europe/Berlin".to_string()),
        ];
        let cfg = Config::load(Some(&file), &env, &["source.root=/c".into()]).unwrap();
        assert_eq!(cfg.source.root, PathBuf::from("/c"));
        assert_eq!(cfg.source.folders, vec!["x", "y"]);
        assert_eq!(cfg.backup.compression, 5);
        assert!(!cfg.store.path_style);
        assert_eq!(cfg.store.path, Some(PathBuf::from("/s")));
        assert_eq!(cfg.timezone, "Europe/Berlin");
    }

    /// An offsite remote of `/` (or of a section alone) is a configuration error, never a panic,
    /// whatever the uploader (every command loads the configuration).
    #[test]
    fn a_root_offsite_remote_is_refused_in_one_line() {
        for (uploader, remote) in [
            ("rclone", "/"),
            ("proton-drive", "/"),
            ("proton-drive", "/my-files"),
            ("proton-drive", "/my-files/../x"),
        ] {
            let e = Config::load(
                None,
                &[],
                &[
                    format!("offsite.uploader={uploader}"),
                    format!("offsite.remote={remote}"),
                ],
            )
            .unwrap_err();
            assert_eq!(
                e.kind(),
                crate::error::ErrorKind::Config,
                "{uploader} {remote}: {e}"
            );
        }
        Config::load(
            None,
            &[],
            &[
                "offsite.uploader=proton-drive".into(),
                "offsite.remote=/my-files/Backups/x".into(),
            ],
        )
        .unwrap();
    }

    #[test]
    fn bad_input_is_named() {
        let e =
            Config::load(None, &[("CAIRN_STORE_COLOUR".into(), "red".into())], &[]).unwrap_err();
        assert!(e.to_string().contains("colour"), "{e}");
        let e = Config::load(None, &[], &["backup.compression=99".into()]).unwrap_err();
        assert!(e.to_string().contains("compression"), "{e}");
        let e = Config::load(None, &[], &["source.folders=../etc".into()]).unwrap_err();
        assert!(e.to_string().contains("../etc"), "{e}");
        let e = Config::load(None, &[], &["source.folders=notes,images,notes".into()]).unwrap_err();
        assert!(e.to_string().contains("twice"), "{e}");
        let e = Config::load(None, &[], &["timezone=Mars/Olympus".into()]).unwrap_err();
        assert!(e.to_string().contains("Mars"), "{e}");
    }

    /// Credentials in the Pushgateway URL are refused, whatever the rest of the URL, in a
    /// message that does not repeat them.
    #[test]
    fn credentials_in_the_pushgateway_url_are_refused_unprinted() {
        let pw = "Zq9-url-secret";
        for url in [
            format!("http://cairn:{pw}@gw:9091"),
            format!("http://cairn:{pw}@gw:9091/prefix"),
            format!("https://cairn:{pw}@gw"),
            format!("cairn:{pw}@gw:9091"),
            format!("http://{pw}@gw"),
        ] {
            let set = format!("metrics.pushgateway={url}");
            let e = Config::load(None, &[], &[set]).unwrap_err();
            let msg = e.to_string();
            assert_eq!(e.kind(), crate::error::ErrorKind::Config, "{url}: {msg}");
            assert!(msg.contains("metrics.pushgateway"), "{msg}");
            assert!(!msg.contains(pw), "{url}: {msg}");
        }
        // An `@` in the path is no credential.
        Config::load(
            None,
            &[],
            &["metrics.pushgateway=http://gw:9091/a@b".into()],
        )
        .unwrap();
        // A typo in the section must not echo the value either.
        let set = format!("metric.pushgateway=http://cairn:{pw}@gw:9091");
        let msg = Config::load(None, &[], &[set]).unwrap_err().to_string();
        assert!(
            msg.contains("metric.pushgateway") && !msg.contains(pw),
            "{msg}"
        );
    }

    /// The Pushgateway's password comes from `CAIRN_PUSHGATEWAY_PASSWORD_FILE` (or the variable)
    /// with `metrics.pushgateway_user`, reaches the sink, and shows in no `Debug` or serialized
    /// configuration; in the file or a `--set` it is an unknown key.
    #[test]
    fn the_pushgateway_password_comes_from_a_secret() {
        let pw = "Zq9-file-secret";
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("password");
        std::fs::write(&file, format!("{pw}\n")).unwrap();
        let env = vec![(
            "CAIRN_PUSHGATEWAY_PASSWORD_FILE".to_string(),
            file.display().to_string(),
        )];
        let sets = [
            "metrics.pushgateway=http://gw:9091".to_string(),
            "metrics.pushgateway_user=cairn".to_string(),
        ];
        let cfg = Config::load(None, &env, &sets).unwrap();
        let auth = cfg.metrics.sink().auth.unwrap();
        assert_eq!((auth.user.as_str(), auth.password.expose()), ("cairn", pw));
        assert!(!format!("{cfg:?} {:?}", cfg.metrics.sink()).contains(pw));
        assert!(!serde_json::to_string(&cfg).unwrap().contains(pw));
        // The variable wins over the file, as with the S3 keys.
        let both = [
            env[0].clone(),
            (
                "CAIRN_PUSHGATEWAY_PASSWORD".to_string(),
                "other".to_string(),
            ),
        ];
        let cfg = Config::load(None, &both, &sets).unwrap();
        assert_eq!(cfg.metrics.sink().auth.unwrap().password.expose(), "other");

        for (env, sets, named) in [
            (vec![], sets.to_vec(), "CAIRN_PUSHGATEWAY_PASSWORD_FILE"),
            (env.clone(), vec![], "metrics.pushgateway_user is not"),
            (
                vec![],
                vec![format!("metrics.pushgateway_password={pw}")],
                "pushgateway_password",
            ),
            (
                env.clone(),
                vec!["metrics.pushgateway_user=a:b".to_string()],
                "without ':'",
            ),
        ] {
            let msg = Config::load(None, &env, &sets).unwrap_err().to_string();
            assert!(msg.contains(named) && !msg.contains(pw), "{msg}");
        }
        let missing = vec![(
            "CAIRN_PUSHGATEWAY_PASSWORD_FILE".to_string(),
            "/nonexistent/password".to_string(),
        )];
        let msg = Config::load(None, &missing, &sets).unwrap_err().to_string();
        assert!(msg.contains("/nonexistent/password"), "{msg}");
    }

    /// The retry policy of each store is configurable, with per-backend defaults, and checked.
    #[test]
    fn retry_policy_is_configured_per_store() {
        let cfg = Config::load(
            None,
            &[],
            &[
                "store.retry_attempts=9".into(),
                "store.retry_base_ms=50".into(),
                "exports.kind=s3".into(),
                "exports.bucket=b".into(),
            ],
        )
        .unwrap();
        assert_eq!(
            cfg.store.retry_policy(),
            RetryPolicy {
                attempts: 9,
                base: Duration::from_millis(50),
                cap: Duration::from_secs(5),
                budget: Duration::from_secs(30),
            }
        );
        assert_eq!(
            cfg.exports.retry_policy(),
            RetryPolicy {
                attempts: u32::MAX,
                base: Duration::from_millis(200),
                cap: Duration::from_secs(10),
                budget: Duration::from_secs(300),
            }
        );
        for (bad, named) in [
            ("store.retry_attempts=0", "store.retry_attempts"),
            ("exports.retry_attempts=1001", "exports.retry_attempts"),
            (
                "exports.retry_budget_secs=3601",
                "exports.retry_budget_secs",
            ),
            ("store.retry_base_ms=0", "store.retry_base_ms"),
            ("store.retry_base_ms=6000", "store.retry_base_ms"),
            ("exports.retry_max_ms=300001", "exports.retry_base_ms"),
        ] {
            let e = Config::load(None, &[], &[bad.into()]).unwrap_err();
            assert!(e.to_string().contains(named), "{bad}: {e}");
        }
    }
}
