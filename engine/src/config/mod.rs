//! Configuration: one TOML file, every key overridable from the environment
//! (`CAIRN_<SECTION>_<KEY>`, e.g. `CAIRN_STORE_PATH`, `CAIRN_SOURCE_FOLDERS=a,b`) or the command
//! line (`--set section.key=value`). Precedence: command line, environment, file, defaults.
//! Secrets never live here: S3 credentials come from the standard AWS variables, the
//! Pushgateway's password from `CAIRN_PUSHGATEWAY_PASSWORD_FILE` (or `…_PASSWORD`), each into a
//! [`Secret`] that no `Debug` or report shows.
//!
//! This folder holds the types and their validation; `load` reads them from the file, the
//! environment and the command line. What is built from them (stores, the uploader, the metrics
//! sink) is [`crate::setup`]'s.

mod load;

pub use load::MAX_CONFIG_LEN;

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::store::RetryPolicy;

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
}

pub use crate::secret::Secret;

/// The variable that holds the Pushgateway's password; `…_FILE` names a file holding it.
pub const PUSHGATEWAY_PASSWORD: &str = "CAIRN_PUSHGATEWAY_PASSWORD";

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

/// `[log]`: what the logs say beside errors and warnings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Where no terminal shows a progress line (a pod, `-q`, `--json`): seconds between two
    /// log lines with a long operation's progress; 0 logs none.
    pub progress_interval_s: u64,
}

impl LogConfig {
    fn validate(&self) -> Result<()> {
        if self.progress_interval_s > 86_400 {
            return Err(Error::config(format!(
                "log.progress_interval_s {} is outside 0..=86400",
                self.progress_interval_s
            )));
        }
        Ok(())
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            progress_interval_s: 60,
        }
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
    /// Logging.
    pub log: LogConfig,
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
            log: LogConfig::default(),
        }
    }
}

impl Config {
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
        self.log.validate()?;
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

#[cfg(test)]
mod tests;
