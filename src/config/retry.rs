//! `[retry]`: how often one provider is tried again, and how long it may ask us to wait.

use serde::{Deserialize, Serialize};

use super::check::{self, Invalid};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    pub max_attempts: u32,
    /// A provider's requested wait above this is not slept but handed to the next provider.
    pub max_wait_s: f64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self { max_attempts: 4, max_wait_s: 30.0 }
    }
}

impl RetryConfig {
    /// # Errors
    /// A wait out of its range, named by its key within the section.
    pub fn validate(&self) -> Result<(), Invalid> {
        check::wait("max_wait_s", self.max_wait_s)
    }
}
