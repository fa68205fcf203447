//! Every call to every provider, as it happened, for the report.

use std::sync::{Arc, Mutex};

use crate::schema::Attempt;

/// A shared, append-only list of attempts.
#[derive(Debug, Clone, Default)]
pub struct AttemptLog(Arc<Mutex<Vec<Attempt>>>);

impl AttemptLog {
    pub fn push(&self, attempt: Attempt) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(attempt);
    }

    /// All attempts so far, in the order they ended.
    pub fn snapshot(&self) -> Vec<Attempt> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
