//! `[fetch]`: how URL sources are downloaded (see [`crate::fetch`]).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::check::{self, Invalid};

/// How URL sources are downloaded (see [`crate::fetch`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FetchConfig {
    /// The most bytes one video may have.
    pub max_bytes: u64,
    pub max_redirects: u32,
    /// The whole download, in seconds.
    pub timeout_s: f64,
    pub connect_timeout_s: f64,
    /// Give up when no byte arrives for this long.
    pub stall_timeout_s: f64,
    /// Addresses or CIDR blocks that may be fetched from although they are
    /// private, loopback or link-local (e.g. `["10.0.0.0/8"]` for a LAN).
    pub allow: Vec<String>,
    /// Where downloads are kept while a run reads them; the system's
    /// temporary directory when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temp_dir: Option<PathBuf>,
}

impl Default for FetchConfig {
    fn default() -> Self {
        Self {
            max_bytes: 2 << 30,
            max_redirects: 5,
            timeout_s: 1800.0,
            connect_timeout_s: 10.0,
            stall_timeout_s: 30.0,
            allow: Vec::new(),
            temp_dir: None,
        }
    }
}

impl FetchConfig {
    /// # Errors
    /// A wait out of its range or an `allow` entry that is no address, named by its key within the section.
    pub fn validate(&self) -> Result<(), Invalid> {
        check::wait("timeout_s", self.timeout_s)?;
        check::wait("connect_timeout_s", self.connect_timeout_s)?;
        check::wait("stall_timeout_s", self.stall_timeout_s)?;
        if let Some(entry) =
            self.allow.iter().find(|e| e.parse::<ipnet::IpNet>().is_err() && e.parse::<std::net::IpAddr>().is_err())
        {
            return Err(Invalid::new("allow", format!("`{entry}` is not an IP address or CIDR block")));
        }
        Ok(())
    }
}
