//! `[merge]`: how observations become a story, a timeline or an answer.

use serde::{Deserialize, Serialize};

use super::check::Invalid;

/// How observations become a story, a timeline or an answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MergeConfig {
    /// Observations per merge call, in characters; longer videos are merged
    /// in windows, then the windows' summaries are merged (map-reduce).
    pub window_chars: usize,
    /// Output cap of each merge call, in tokens.
    pub max_output_tokens: u32,
    /// Output cap of each observation call, in tokens.
    pub observation_tokens: u32,
}

impl Default for MergeConfig {
    fn default() -> Self {
        Self { window_chars: 12_000, max_output_tokens: 1024, observation_tokens: 300 }
    }
}

impl MergeConfig {
    /// # Errors
    /// A value out of its range, named by its key within the section.
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.window_chars < 500 {
            return Err(Invalid::new("window_chars", format!("{} is below 500", self.window_chars)));
        }
        Ok(())
    }
}
