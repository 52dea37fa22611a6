//! The engine's one error type. Every failure carries a [`ErrorKind`] so that callers can decide
//! what to do without parsing messages: the retry wrapper retries only [`ErrorKind::Transient`],
//! the CLI maps [`ErrorKind::Config`] and [`ErrorKind::Usage`] to exit code 2, and `NotFound` is
//! never retried because asking again will not make an object appear.

use std::fmt;

/// What went wrong, coarse enough to act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The object, snapshot, path or file does not exist.
    NotFound,
    /// A failure that may succeed when tried again (timeouts, throttling, 5xx, injected faults).
    Transient,
    /// A local I/O failure that is not expected to go away by itself.
    Io,
    /// Stored data does not match what it claims to be: bad hash, bad frame, short object.
    Corrupt,
    /// The configuration file or an override is invalid.
    Config,
    /// The command was asked to do something impossible with the arguments it got.
    Usage,
    /// The operation would overwrite or contradict something that already exists.
    Conflict,
    /// Another process holds the lock on the state directory or repository.
    Locked,
    /// The catalog (RocksDB) failed.
    Catalog,
    /// Intact data of a format version this cairn does not read (written by a newer one): to be
    /// refused, never treated as damage.
    Unsupported,
    /// The store did not answer within its retry budget (a server down for longer than that):
    /// already retried, so never retried again by an outer layer.
    Unavailable,
}

/// The process exit codes of the `cairn` command, in one place for the CLI and the run report.
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// Failure; nothing was committed (for `run`: also an export that failed after the commit).
    pub const FAILURE: u8 = 1;
    /// Bad arguments or configuration.
    pub const USAGE: u8 = 2;
    /// Committed, with warnings (unreadable, vanished or changed files).
    pub const WARNINGS: u8 = 3;
    /// Held or lost: the state directory or a lease in the store (repository, day, offsite) is
    /// held by another process, a lease this process held was lost, or gc left due packs
    /// because the repository was in use.
    pub const LOCKED: u8 = 4;
    /// `offsite sync`: some days failed to reach the remote or were left for the next run.
    pub const OFFSITE_INCOMPLETE: u8 = 5;
}

impl ErrorKind {
    /// The exit code a command that failed with this kind ends with.
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorKind::Config | ErrorKind::Usage => exit::USAGE,
            ErrorKind::Locked => exit::LOCKED,
            _ => exit::FAILURE,
        }
    }

    /// A short stable name, used in JSON reports and log fields.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not_found",
            ErrorKind::Transient => "transient",
            ErrorKind::Io => "io",
            ErrorKind::Corrupt => "corrupt",
            ErrorKind::Config => "config",
            ErrorKind::Usage => "usage",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Locked => "locked",
            ErrorKind::Catalog => "catalog",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Unavailable => "unavailable",
        }
    }
}

/// An engine error: a kind, a message that names the thing that failed, and an optional cause.
///
/// It prints its cause after its message and, for that reason, does not also return it from
/// [`std::error::Error::source`]: a chain of contexts around it (anyhow's, in the CLI) then
/// names each cause exactly once, by construction. [`Error::cause`] reaches the cause for a
/// caller that looks for a particular one.
#[derive(Debug, thiserror::Error)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    // Not named `source`: thiserror would return a field of that name from `source()`.
    cause: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(source) = &self.cause {
            // An error that is all cause (its message empty) reads as the cause alone.
            if self.message.is_empty() {
                write!(f, "{source}")?;
            } else {
                write!(f, ": {source}")?;
            }
        }
        Ok(())
    }
}

/// The engine's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A new error of `kind` with a message naming what failed.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            cause: None,
        }
    }

    /// Attaches the underlying cause.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.cause = Some(Box::new(source));
        self
    }

    /// An I/O error about `what`; the kind follows the OS error (missing file → `NotFound`).
    pub fn io(what: impl fmt::Display, err: std::io::Error) -> Self {
        let kind = match err.kind() {
            std::io::ErrorKind::NotFound => ErrorKind::NotFound,
            std::io::ErrorKind::Interrupted | std::io::ErrorKind::TimedOut => ErrorKind::Transient,
            _ => ErrorKind::Io,
        };
        Error::new(kind, what.to_string()).with_source(err)
    }

    /// Stored data that fails a check.
    pub fn corrupt(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Corrupt, message)
    }

    /// An invalid configuration value.
    pub fn config(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Config, message)
    }

    /// An impossible request.
    pub fn usage(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Usage, message)
    }

    /// A missing thing.
    pub fn not_found(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::NotFound, message)
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Whether trying the same operation again may succeed. Only transient failures qualify:
    /// `NotFound` and `Corrupt` are answers, not accidents.
    pub fn is_retryable(&self) -> bool {
        self.kind == ErrorKind::Transient
    }

    /// The underlying cause, already part of this error's text.
    pub fn cause(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        self.cause.as_deref()
    }

    /// The message without the cause.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The same error, of another kind: a path refused as a usage error when a user typed it is
    /// damage when an archive holds it.
    pub fn with_kind(mut self, kind: ErrorKind) -> Self {
        self.kind = kind;
        self
    }

    /// Prefixes the message with context, keeping kind and cause.
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }
}

impl From<rocksdb::Error> for Error {
    fn from(err: rocksdb::Error) -> Self {
        Error::new(ErrorKind::Catalog, "catalog (RocksDB) operation failed").with_source(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cause is printed once by construction: in the error's text, and not again as its
    /// `source()`, so that a chain of contexts (anyhow's) names it once without comparing strings.
    #[test]
    fn the_cause_is_in_the_text_and_not_a_source() {
        let os = std::io::Error::from_raw_os_error(20);
        let e = Error::io("opening /x/y", os);
        assert_eq!(e.kind(), ErrorKind::Io);
        let text = e.to_string();
        assert!(text.starts_with("opening /x/y: "), "{text}");
        assert_eq!(text.matches("os error 20").count(), 1, "{text}");
        assert!(std::error::Error::source(&e).is_none());
        assert!(
            e.cause()
                .is_some_and(|c| c.to_string().contains("os error 20"))
        );
    }
}
