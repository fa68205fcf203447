//! Progress events of a run, for callers that want to show them. Sent on an
//! unbounded channel, so a slow reader never slows the run down.

use serde::Serialize;

/// One step of a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Progress {
    /// A URL source is being downloaded: bytes so far, of `total` when known.
    Downloading { bytes: u64, total: Option<u64> },
    /// The video was read: how long it is.
    Probed { duration_ms: u64 },
    /// The plan: which providers, how many frames and calls at most, and its worst-case cost.
    Planned { providers: Vec<String>, frames: Option<u32>, calls: u32, estimated_usd: f64 },
    /// Frames sampled so far.
    Sampled { frames: u32 },
    /// The video itself is being sent to a native-video provider.
    Uploading { provider: String, bytes: u64 },
    /// One unit finished (`reused`: read from the journal), and the spend so far.
    Unit { provider: String, reused: bool, spent_usd: f64 },
    /// Observations are being merged into the answer.
    Merging { calls: u32 },
    /// The run is over.
    Done { spent_usd: f64 },
}

pub type ProgressSender = tokio::sync::mpsc::UnboundedSender<Progress>;

/// Send `event` if anyone listens; a closed channel is not an error.
pub fn emit(sender: Option<&ProgressSender>, event: Progress) {
    if let Some(tx) = sender {
        let _ = tx.send(event);
    }
}
