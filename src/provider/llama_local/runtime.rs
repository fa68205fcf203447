//! Process-wide llama.cpp state and checks made before llama.cpp sees a file.

use std::fmt;
use std::io::Read;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::{send_logs_to_tracing, LogOptions};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

/// The one llama.cpp backend of this process.
///
/// llama.cpp allows a single live backend (a second `init` is an error), so
/// every worker and every test shares this one. The first call also routes
/// llama.cpp, ggml and mtmd logs into `tracing` (otherwise the vision loader
/// prints to stderr). Thread counts that behave under contention are chosen
/// by `default_threads` in this module.
///
/// # Errors
/// When something else in the process initialized llama.cpp first.
pub fn backend() -> Result<&'static LlamaBackend, String> {
    static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            send_logs_to_tracing(LogOptions::default());
            LlamaBackend::init().map_err(|e| format!("cannot start llama.cpp: {e}"))
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// Threads for decoding when the profile names none. llama.cpp's OpenMP
/// threads spin between parallel regions, and GNU libgomp reads
/// `OMP_WAIT_POLICY` only at process start, so it cannot be made passive from
/// here. On 2 cores with other work running (ffmpeg decoding frames, another
/// process) one thread did best: Gemma 3 270M generated 39–45 tok/s against
/// 23–25 with two spinning threads. So: one thread on machines of one or two
/// cores, else one core left free, at most four. Set `threads` in the profile
/// (and `OMP_WAIT_POLICY=passive` in the environment) to choose otherwise.
pub(super) fn default_threads() -> u32 {
    match std::thread::available_parallelism().map_or(1, |n| n.get()) {
        0..=2 => 1,
        n => (n - 1).min(4) as u32,
    }
}

/// Why a file cannot be handed to llama.cpp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum FileProblem {
    Missing,
    NotAFile,
    Unreadable(String),
    NotGguf { first_bytes: Vec<u8> },
}

impl fmt::Display for FileProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileProblem::Missing => write!(f, "does not exist"),
            FileProblem::NotAFile => write!(f, "is not a file"),
            FileProblem::Unreadable(e) => write!(f, "cannot be read: {e}"),
            FileProblem::NotGguf { first_bytes } => write!(
                f,
                "is not a GGUF file: it starts with {:02x?}, not the bytes \"GGUF\" (a corrupt or unfinished download?)",
                first_bytes
            ),
        }
    }
}

/// Check that `path` is a readable file that starts with the GGUF magic, so a
/// random or truncated file never reaches llama.cpp's loader.
pub(super) fn check_gguf(path: &Path) -> Result<(), FileProblem> {
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(FileProblem::Missing),
        Err(e) => return Err(FileProblem::Unreadable(e.to_string())),
    };
    if !meta.is_file() {
        return Err(FileProblem::NotAFile);
    }
    let mut magic = Vec::with_capacity(4);
    std::fs::File::open(path)
        .and_then(|f| f.take(4).read_to_end(&mut magic))
        .map_err(|e| FileProblem::Unreadable(e.to_string()))?;
    if magic != b"GGUF" {
        return Err(FileProblem::NotGguf { first_bytes: magic });
    }
    Ok(())
}

/// Run `f` on this thread while collecting the warnings and errors llama.cpp
/// logs, so a failed load can say why in its error. They are passed on at
/// debug level; other lines of that span (model loading chatter) are dropped.
pub(super) fn with_captured_errors<T>(f: impl FnOnce() -> T) -> (T, Vec<String>) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let subscriber = tracing_subscriber::registry().with(Capture(lines.clone()));
    let out = tracing::subscriber::with_default(subscriber, f);
    let lines = std::mem::take(&mut *lines.lock().unwrap_or_else(|e| e.into_inner()));
    for line in &lines {
        tracing::debug!(target: "llama-cpp-2", "{line}");
    }
    (out, lines)
}

/// The captured lines as one sentence: the errors first, else the warnings.
pub(super) fn reason(lines: &[String]) -> Option<String> {
    let pick = |prefix: &str| -> Vec<String> {
        lines
            .iter()
            .filter_map(|l| l.strip_prefix(prefix))
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect()
    };
    let mut picked = pick("E ");
    if picked.is_empty() {
        picked = pick("W ");
    }
    picked.dedup();
    picked.truncate(4);
    (!picked.is_empty()).then(|| picked.join("; "))
}

struct Capture(Arc<Mutex<Vec<String>>>);

impl<S: Subscriber> Layer<S> for Capture {
    fn enabled(&self, metadata: &Metadata<'_>, _: Context<'_, S>) -> bool {
        *metadata.level() <= Level::WARN
    }

    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let mut message = Message(String::new());
        event.record(&mut message);
        let tag = if *event.metadata().level() == Level::ERROR { "E " } else { "W " };
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(format!("{tag}{}", message.0.trim()));
    }
}

struct Message(String);

impl Visit for Message {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0 = value.to_string();
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_gguf_files_pass() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(check_gguf(&dir.path().join("absent.gguf")), Err(FileProblem::Missing));
        assert_eq!(check_gguf(dir.path()), Err(FileProblem::NotAFile));
        let short = dir.path().join("short");
        std::fs::write(&short, b"GG").unwrap();
        assert_eq!(check_gguf(&short), Err(FileProblem::NotGguf { first_bytes: b"GG".to_vec() }));
        let good = dir.path().join("good.gguf");
        std::fs::write(&good, b"GGUF\x03\x00\x00\x00").unwrap();
        assert_eq!(check_gguf(&good), Ok(()));
        let msg = FileProblem::NotGguf { first_bytes: vec![0x7f, 0x45] }.to_string();
        assert!(msg.contains("[7f, 45]") && msg.contains("not the bytes \"GGUF\""), "{msg}");
    }

    #[test]
    fn captured_errors_become_one_reason() {
        let ((), lines) = with_captured_errors(|| {
            tracing::info!("loading");
            tracing::warn!("a warning");
            tracing::error!("error: mismatch (n_embd = 64)\nhint: wrong file");
        });
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert_eq!(reason(&lines).unwrap(), "error: mismatch (n_embd = 64) hint: wrong file");
        assert_eq!(reason(&["W only a warning".into()]).unwrap(), "only a warning");
        assert_eq!(reason(&[]), None);
    }
}
