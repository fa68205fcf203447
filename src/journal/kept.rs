//! Videos given as bytes are kept as a hash and a path, never in a row.
//!
//! A run whose request carries its video's bytes (`VideoSource::Bytes`) is
//! stored with its source made a path: the bytes are written once, beside
//! the journal, to `<journal file>.videos/<sha256>.<format>`, and the run's
//! `video_hash` is set to that sha256 when the run is entered. A resume reads
//! that file, and checks its hash as it does any path's. The copy is needed
//! only while a run that may be resumed names it: it is removed when the
//! last unfinished run naming it ends, and by [`super::Journal::prune`].
//!
//! Placing a copy (with its run's row) and removing one (when no unfinished
//! run names it) each happen under the journal's write lock, so a run
//! entered by another process at the same moment never loses its copy.

use std::io::Write;
use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use sha2::{Digest, Sha256};

use super::stored_request;
use crate::schema::{VideoRequest, VideoSource};

/// Where the copies of the journal at `file` go.
pub(super) fn dir_of(file: &Path) -> PathBuf {
    let mut name = file.file_name().unwrap_or_default().to_os_string();
    name.push(".videos");
    file.with_file_name(name)
}

/// A container hint fit for a file name: letters and digits, at most 8.
fn extension(format: Option<&str>) -> String {
    let hint = format.unwrap_or("mp4").trim_start_matches('.');
    if !hint.is_empty() && hint.len() <= 8 && hint.chars().all(|c| c.is_ascii_alphanumeric()) {
        hint.to_ascii_lowercase()
    } else {
        "mp4".into()
    }
}

/// Bytes made ready to be kept: their hash, the path they are kept at, and
/// (in a journal with a file) the copy written under a temporary name.
pub(super) struct Staged {
    pub(super) hash: String,
    pub(super) path: PathBuf,
    temp: Option<tempfile::NamedTempFile>,
}

/// Hash `data` and, when `dir` is given, write it there under a temporary
/// name (synced: the row that will name it is durable too). An in-memory
/// journal keeps no copy: its runs end with the process.
pub(super) fn stage(dir: Option<&Path>, data: &[u8], format: Option<&str>) -> Result<Staged, String> {
    let hash = hex::encode(Sha256::digest(data));
    let name = format!("{hash}.{}", extension(format));
    let Some(dir) = dir else {
        let path = Path::new("(video bytes not kept: the journal is in memory)").join(name);
        return Ok(Staged { hash, path, temp: None });
    };
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let mut temp = tempfile::Builder::new()
        .prefix(".incoming-")
        .tempfile_in(dir)
        .map_err(|e| format!("cannot create a file in {}: {e}", dir.display()))?;
    temp.write_all(data)
        .and_then(|()| temp.as_file().sync_all())
        .map_err(|e| format!("cannot write the video's bytes to {}: {e}", dir.display()))?;
    Ok(Staged { hash, path: dir.join(name), temp: Some(temp) })
}

impl Staged {
    /// Move the copy into place (call it under the write lock). A copy
    /// already there holds the same bytes: it is kept, this one dropped.
    pub(super) fn place(self) -> Result<(), String> {
        let Some(temp) = self.temp else { return Ok(()) };
        match temp.persist_noclobber(&self.path) {
            Ok(_) => Ok(()),
            Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(format!("cannot keep the video's bytes at {}: {}", self.path.display(), e.error)),
        }
    }

    /// `request` with its source made the kept path (the bytes are not copied).
    pub(super) fn request(&self, request: &VideoRequest) -> VideoRequest {
        VideoRequest {
            source: VideoSource::Path { path: self.path.clone() },
            task: request.task.clone(),
            sampling: request.sampling.clone(),
            constraints: request.constraints.clone(),
        }
    }
}

/// Remove the kept copy at `path` when no unfinished run names it any more.
/// Call it under the write lock. Whether it was removed.
pub(super) fn release(c: &Connection, path: &str) -> rusqlite::Result<bool> {
    let named: i64 =
        c.query_row("SELECT COUNT(*) FROM runs WHERE kept_video = ?1 AND status = 'running'", params![path], |row| {
            row.get(0)
        })?;
    if named > 0 {
        return Ok(false);
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => {
            tracing::warn!(file = %path, error = %e, "cannot remove a kept video that no run needs any more");
            Ok(false)
        }
    }
}

/// Once the run `id` has ended: remove the kept copy it names, if no other
/// unfinished run names it, under the write lock.
pub(super) fn release_run(c: &mut Connection, id: i64) -> rusqlite::Result<()> {
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let kept: Option<String> = tx
        .query_row("SELECT kept_video FROM runs WHERE id = ?1 AND status != 'running'", params![id], |row| row.get(0))
        .optional()?
        .flatten();
    if let Some(path) = kept {
        release(&tx, &path)?;
    }
    tx.commit()
}

/// Remove every file in the copies' dir that no unfinished run names (what
/// a process that died between a run's end and the removal left). Call it
/// under the write lock. How many files were removed.
pub(super) fn sweep(c: &Connection, dir: &Path) -> rusqlite::Result<u64> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Ok(0) };
    let mut removed = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        // A copy being written by a run not yet entered is left alone.
        if name.to_string_lossy().starts_with(".incoming-") || !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        if release(c, &path.to_string_lossy())? {
            removed += 1;
        }
    }
    Ok(removed)
}

/// Version 3: each run stored with its video's bytes is rewritten as a hash
/// and a path. An unfinished run's bytes are written out first (beside the
/// journal at `file`), so it can still be resumed; a finished run keeps only
/// the hash and the path its copy had.
pub(super) fn migrate(c: &Connection, file: Option<&Path>) -> rusqlite::Result<()> {
    let dir = file.map(dir_of);
    // One row in memory at a time: each may hold a whole video.
    let ids: Vec<i64> = c
        .prepare("SELECT id FROM runs WHERE instr(request, '\"kind\":\"bytes\"') > 0")?
        .query_map([], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for id in ids {
        let (text, status): (String, String) =
            c.query_row("SELECT request, status FROM runs WHERE id = ?1", params![id], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })?;
        let Ok(request) = stored_request(&text) else { continue };
        let VideoSource::Bytes { data, format } = &request.source else { continue };
        let running = status == "running";
        let staged = stage(dir.as_deref().filter(|_| running), data, format.as_deref()).map_err(|e| failed(id, e))?;
        let staged = match (running, &dir) {
            // A finished run names where its copy would be; none is written.
            (false, Some(dir)) => Staged { path: dir.join(staged.path.file_name().unwrap_or_default()), ..staged },
            _ => staged,
        };
        let stored = serde_json::to_string(&staged.request(&request)).map_err(|e| failed(id, e))?;
        let (hash, kept) = (staged.hash.clone(), staged.path.to_string_lossy().into_owned());
        if running {
            staged.place().map_err(|e| failed(id, e))?;
        }
        c.execute(
            "UPDATE runs SET request = ?1, video_hash = COALESCE(video_hash, ?2), kept_video = ?3 WHERE id = ?4",
            params![stored, hash, running.then_some(kept), id],
        )?;
    }
    Ok(())
}

/// A run that cannot be migrated, as the migration's error.
fn failed(id: i64, e: impl std::fmt::Display) -> rusqlite::Error {
    rusqlite::Error::ToSqlConversionFailure(format!("run {id}: {e}").into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_container_hint_becomes_a_safe_extension() {
        assert_eq!(extension(Some("MOV")), "mov");
        assert_eq!(extension(Some(".webm")), "webm");
        assert_eq!(extension(None), "mp4");
        assert_eq!(extension(Some("../../etc/passwd")), "mp4");
        assert_eq!(extension(Some("averyverylongname")), "mp4");
        assert_eq!(dir_of(Path::new("/d/journal.sqlite3")), Path::new("/d/journal.sqlite3.videos"));
    }
}
