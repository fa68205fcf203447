//! What a check finds: [`ConfigError`] for a whole load, [`Invalid`] for one
//! value of one section, and the bounds several sections share.

use crate::timecode::MAX_SECONDS;

/// A configuration error, naming the key and where it came from.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config {origin}: cannot read it: {source}")]
    Read { origin: String, source: std::io::Error },
    #[error("config {origin}: not valid TOML: {message}")]
    Syntax { origin: String, message: String },
    #[error("config {origin}: key `{key}`: {message}")]
    Key { origin: String, key: String, message: String },
    #[error("config: {0}")]
    Merge(String),
}

/// A value a section refuses: its key, relative to the section until
/// [`Invalid::within`] places it, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("key `{key}`: {message}")]
pub struct Invalid {
    pub key: String,
    pub message: String,
}

impl Invalid {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self { key: key.into(), message: message.into() }
    }

    /// The same error, its key under `section` (`fps` under `sampling` is `sampling.fps`).
    pub fn within(self, section: &str) -> Self {
        Self { key: format!("{section}.{}", self.key), message: self.message }
    }

    /// The error as one layer's: named with the file or variable it came from.
    pub fn into_error(self, origin: &str) -> ConfigError {
        ConfigError::Key { origin: origin.to_string(), key: self.key, message: self.message }
    }
}

/// A setting that becomes a wait: a finite number of seconds in (0, a week].
pub fn wait(key: &str, seconds: f64) -> Result<(), Invalid> {
    if seconds > 0.0 && seconds <= MAX_SECONDS {
        Ok(())
    } else {
        Err(Invalid::new(key, format!("{seconds} is outside (0, {MAX_SECONDS}] seconds")))
    }
}

/// A finite number ≥ 0 (an amount of money, an interval that may be nothing).
pub fn non_negative(key: &str, value: f64) -> Result<(), Invalid> {
    if value >= 0.0 && value.is_finite() {
        Ok(())
    } else {
        Err(Invalid::new(key, "must be a finite number ≥ 0"))
    }
}

/// An http(s) URL; shown in the error without its credentials.
pub fn http_url(key: &str, url: &str) -> Result<(), Invalid> {
    if url.starts_with("http://") || url.starts_with("https://") {
        Ok(())
    } else {
        Err(Invalid::new(key, format!("`{}` is not an http(s) URL", crate::secret::redact_urls(url))))
    }
}
