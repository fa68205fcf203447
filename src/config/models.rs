//! `[models]`: where local models come from and where they are kept.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::check::Invalid;

/// Where local models come from and where they are kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelsConfig {
    /// The root the catalogue's paths are relative to (a mirror may stand in).
    pub base_url: String,
    /// Where downloaded models are kept; the platform cache dir when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_dir: Option<PathBuf>,
}

impl Default for ModelsConfig {
    fn default() -> Self {
        Self { base_url: "https://huggingface.co".into(), cache_dir: None }
    }
}

impl ModelsConfig {
    /// # Errors
    /// A `base_url` that is no http(s) URL, named by its key within the section.
    pub fn validate(&self) -> Result<(), Invalid> {
        super::check::http_url("base_url", &self.base_url)
    }
}
