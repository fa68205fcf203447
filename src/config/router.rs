//! `[router]`: which providers serve a task, in which order.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::check::Invalid;
use crate::timecode::MAX_SECONDS;

/// The tasks `router.tasks` and aliases may name.
pub const TASKS: [&str; 4] = ["describe", "timeline", "ask", "find"];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouterConfig {
    /// Providers tried in order.
    pub chain: Vec<String>,
    /// A chain per task (`describe`, `timeline`, `ask`, `find`), instead of `chain`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub tasks: BTreeMap<String, Vec<String>>,
    /// Providers for the text calls that merge observations into a story,
    /// answer or timeline; the task's chain when empty.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub text_chain: Vec<String>,
    /// How long a provider that keeps failing sits out, in seconds.
    pub cooldown_s: f64,
    /// Model names that `vidgate serve`'s OpenAI-compatible endpoint takes
    /// besides `vidgate/<task>`: `[router.aliases.NAME]` with a task and,
    /// optionally, the only providers to use.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub aliases: BTreeMap<String, RouteAlias>,
}

/// A model name for the OpenAI-compatible endpoint: a task, and optionally
/// the providers that may serve it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteAlias {
    /// `describe`, `timeline`, `ask` or `find`.
    pub task: String,
    /// Only these providers (as a request's `allowed_providers`: those in
    /// the task's configured chain in its order, then the others in this
    /// order); the task's chain when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chain: Vec<String>,
}

/// The longest alias name.
const MAX_ALIAS_LEN: usize = 64;

impl Default for RouterConfig {
    fn default() -> Self {
        Self {
            chain: vec!["local".into()],
            tasks: BTreeMap::new(),
            text_chain: Vec::new(),
            cooldown_s: 60.0,
            aliases: BTreeMap::new(),
        }
    }
}

impl RouterConfig {
    /// The configured chain for a task name.
    pub fn chain_for(&self, task: &str) -> &[String] {
        self.tasks.get(task).map_or(&self.chain, |c| c)
    }

    /// Every chain with its key: `chain`, `text_chain`, `tasks.NAME`, then
    /// `aliases.NAME.chain`.
    pub(super) fn chains(&self) -> impl Iterator<Item = (String, &[String])> {
        [("chain".to_string(), self.chain.as_slice()), ("text_chain".to_string(), self.text_chain.as_slice())]
            .into_iter()
            .chain(self.tasks.iter().map(|(t, c)| (format!("tasks.{t}"), c.as_slice())))
            .chain(self.aliases.iter().map(|(n, a)| (format!("aliases.{n}.chain"), a.chain.as_slice())))
    }

    /// Checks what the section alone can tell; whether its chains name
    /// providers that exist is known only once every layer is merged.
    ///
    /// # Errors
    /// A value out of its range or a task that does not exist, named by its key within the section.
    pub fn validate(&self) -> Result<(), Invalid> {
        // Zero: a failing provider is tried again at once.
        if !(self.cooldown_s >= 0.0 && self.cooldown_s <= MAX_SECONDS) {
            return Err(Invalid::new(
                "cooldown_s",
                format!("{} is outside [0, {MAX_SECONDS}] seconds", self.cooldown_s),
            ));
        }
        if let Some(task) = self.tasks.keys().find(|t| !TASKS.contains(&t.as_str())) {
            return Err(Invalid::new(
                format!("tasks.{task}"),
                format!("not a task; the tasks are {}", TASKS.join(", ")),
            ));
        }
        for (name, alias) in &self.aliases {
            let fine = |c: char| c.is_ascii_alphanumeric() || "-_.:/".contains(c);
            if name.is_empty() || name.len() > MAX_ALIAS_LEN || !name.chars().all(fine) {
                return Err(Invalid::new(
                    format!("aliases.{name}"),
                    format!("not a model name: give 1 to {MAX_ALIAS_LEN} letters, digits or `-_.:/`"),
                ));
            }
            if name.starts_with("vidgate/") {
                return Err(Invalid::new(
                    format!("aliases.{name}"),
                    "names starting with `vidgate/` are the built-in models (vidgate/describe, ...)",
                ));
            }
            if !TASKS.contains(&alias.task.as_str()) {
                return Err(Invalid::new(
                    format!("aliases.{name}.task"),
                    format!("`{}` is not a task; the tasks are {}", alias.task, TASKS.join(", ")),
                ));
            }
        }
        Ok(())
    }
}
