//! Videos given as bytes are kept as a hash and a path, never in a row.
//!
//! A run whose request carries its video's bytes (`VideoSource::Bytes`) is
//! stored with its source made a path: the bytes are written once, beside
//! the journal, to `<journal file>.videos/<sha256>.<format>`, and the run's
//! `video_hash` is set to that sha256 when the run is entered. The row's
//! `kept_video` names the copy by its file name alone (`<sha256>.<format>`):
//! one journal may be opened under several spellings of its path (`..`, a
//! symbolic link, another process's working directory), and a copy is
//! matched by its name in the one folder beside the journal, never by a
//! path's text. A resume reads that file, and checks its hash as it does any
//! path's. The copy is needed
//! only while a run that may be resumed names it: it is removed when the
//! last unfinished run naming it ends, and by [`super::Journal::prune`].
//!
//! Placing a copy (with its run's row) and removing one (when no unfinished
//! run names it) each happen under the journal's write lock, so a run
//! entered by another process at the same moment never loses its copy.

use std::io::Write;
use std::path::{Path, PathBuf};

use rusqlite::{params, Connection};
use sha2::{Digest, Sha256};

use super::db::{vals, Conn, DbResult, Sql, SqlExt};
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

/// Bytes made ready to be kept: their hash, the file name and the path they
/// are kept at, and (in a journal with a file) the copy written under a
/// temporary name.
pub(super) struct Staged {
    pub(super) hash: String,
    /// `<sha256>.<format>`, what the run's row names (`kept_video`).
    pub(super) name: String,
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
        let path = Path::new("(video bytes not kept: the journal is in memory)").join(&name);
        return Ok(Staged { hash, name, path, temp: None });
    };
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let mut temp = tempfile::Builder::new()
        .prefix(INCOMING)
        .tempfile_in(dir)
        .map_err(|e| format!("cannot create a file in {}: {e}", dir.display()))?;
    temp.write_all(data)
        .and_then(|()| temp.as_file().sync_all())
        .map_err(|e| format!("cannot write the video's bytes to {}: {e}", dir.display()))?;
    Ok(Staged { hash, path: dir.join(&name), name, temp: Some(temp) })
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

/// The name a run's row gives the copy at `path`, when `path` is a file of
/// the copies' folder `dir` (canonical) under whatever spelling.
pub(super) fn name_of(path: &Path, dir: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty())?;
    let same = parent == dir || std::fs::canonicalize(parent).is_ok_and(|p| p == dir);
    (same && !name.starts_with('.')).then(|| name.to_string())
}

/// Remove the kept copy `name` (a file name in the copies' folder `dir`)
/// when no unfinished run names it any more. Call it under the write lock.
/// Whether it was removed.
pub(super) fn release(c: &mut dyn Sql, dir: &Path, name: &str) -> DbResult<bool> {
    // A name is one file of the folder, never a path out of it.
    if Path::new(name).file_name().and_then(|n| n.to_str()) != Some(name) {
        return Ok(false);
    }
    let named: Option<i64> =
        c.one("SELECT COUNT(*) FROM runs WHERE kept_video = ?1 AND status = 'running'", &vals![name])?;
    if named.unwrap_or(0) > 0 {
        return Ok(false);
    }
    let path = dir.join(name);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "cannot remove a kept video that no run needs any more");
            Ok(false)
        }
    }
}

/// Once the run `id` has ended: remove the kept copy it names (in the
/// copies' folder `dir`), if no other unfinished run names it, under the
/// write lock. A journal in memory keeps no copies.
pub(super) fn release_run(c: &mut Conn, dir: Option<&Path>, id: i64) -> DbResult<()> {
    let Some(dir) = dir else { return Ok(()) };
    c.write(|tx| {
        let kept: Option<Option<String>> =
            tx.one("SELECT kept_video FROM runs WHERE id = ?1 AND status != 'running'", &vals![id])?;
        if let Some(name) = kept.flatten() {
            release(tx, dir, &name)?;
        }
        Ok(())
    })
}

/// The prefix of a copy being written, before its run is entered.
pub(super) const INCOMING: &str = ".incoming-";

/// How old a copy being written must be before a sweep takes it for one
/// that a process left when it died between writing it and entering its run.
const INCOMING_LEFT_AFTER: std::time::Duration = std::time::Duration::from_secs(3600);

/// Remove every file in the copies' dir that no unfinished run names (what
/// a process that died between a run's end and the removal left), and the
/// copies being written for more than an hour (a process died before its
/// run was entered). Call it under the write lock. How many files were
/// removed.
pub(super) fn sweep(c: &mut dyn Sql, dir: &Path) -> DbResult<u64> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Ok(0) };
    let mut removed = 0;
    for entry in entries.flatten() {
        let Ok(name) = entry.file_name().into_string() else { continue };
        if !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        // A copy being written by a run not yet entered is left alone, unless
        // it was left long ago.
        if name.starts_with(INCOMING) {
            let age = entry.metadata().and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok());
            if age.is_some_and(|age| age > INCOMING_LEFT_AFTER) && std::fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
            continue;
        }
        if release(c, dir, &name)? {
            removed += 1;
        }
    }
    Ok(removed)
}

/// Version 3: each run stored with its video's bytes is rewritten as a hash
/// and a path. An unfinished run's bytes are written out first (beside the
/// journal, in the copies' folder `dir`), so it can still be resumed; a
/// finished run keeps only the hash and the path its copy had.
pub(super) fn migrate(c: &Connection, dir: Option<&Path>) -> rusqlite::Result<()> {
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
        let staged = stage(dir.filter(|_| running), data, format.as_deref()).map_err(|e| failed(id, e))?;
        let staged = match (running, dir) {
            // A finished run names where its copy would be; none is written.
            (false, Some(dir)) => Staged { path: dir.join(&staged.name), ..staged },
            _ => staged,
        };
        let stored = serde_json::to_string(&staged.request(&request)).map_err(|e| failed(id, e))?;
        let (hash, kept) = (staged.hash.clone(), staged.name.clone());
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

/// Version 4: a run's `kept_video` is its copy's file name, no longer the
/// whole path (under the spelling of the journal's path its process used).
pub(super) fn migrate_names(c: &Connection) -> rusqlite::Result<()> {
    let rows: Vec<(i64, String)> = c
        .prepare("SELECT id, kept_video FROM runs WHERE kept_video IS NOT NULL")?
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for (id, kept) in rows {
        let name = Path::new(&kept).file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if name != kept {
            c.execute("UPDATE runs SET kept_video = ?1 WHERE id = ?2", params![name, id])?;
        }
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
