//! Secrets held in memory: a value read from the environment or a mounted file that must reach
//! the one place that sends it and nowhere else. Its own module so that the configuration that
//! reads it and the senders that use it (metrics) both depend on it, not on each other.

/// A secret read from the environment or a mounted file: its `Debug` shows `[redacted]` and it
/// is never serialized, so that a configuration printed or reported cannot hold it.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}
