//! `[budget]`: what a request and a day may spend, and what may be lowered to fit.

use serde::{Deserialize, Serialize};

use super::check::{self, Invalid};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BudgetConfig {
    /// Hard cap on spend for one request, in US dollars.
    pub max_usd_per_request: f64,
    /// Hard cap on spend per UTC day, across runs (read from the journal).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_usd_per_day: Option<f64>,
    /// What may be lowered, in this order, when a plan costs more than the
    /// budget allows: `fps` (fewer frames), `width` (smaller frames),
    /// `model` (a cheaper model of the same provider). Empty: refuse instead.
    pub downgrade: Vec<Downgrade>,
    /// Never sample sparser than this many frames per second when downgrading.
    pub min_fps: f64,
    /// Never send frames narrower than this when downgrading.
    pub min_width: u32,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        Self {
            max_usd_per_request: 0.25,
            max_usd_per_day: None,
            downgrade: vec![Downgrade::Fps, Downgrade::Width, Downgrade::Model],
            min_fps: 0.05,
            min_width: 256,
        }
    }
}

/// One way to make a plan cheaper.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Downgrade {
    Fps,
    Width,
    Model,
}

impl BudgetConfig {
    /// # Errors
    /// The first value out of its range, named by its key within the section.
    pub fn validate(&self) -> Result<(), Invalid> {
        check::non_negative("max_usd_per_request", self.max_usd_per_request)?;
        if let Some(day) = self.max_usd_per_day {
            check::non_negative("max_usd_per_day", day)?;
        }
        if !(self.min_fps > 0.0 && self.min_fps.is_finite()) {
            return Err(Invalid::new("min_fps", "must be a finite number > 0"));
        }
        Ok(())
    }
}
