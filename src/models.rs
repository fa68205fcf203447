//! Local models: the catalogue in `providers/models.toml`, and downloads into
//! a cache directory that resume after an interruption and are checked by
//! size and sha256 before they are used.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

const CATALOGUE: &str = include_str!("../providers/models.toml");

/// One file of a model: the language model or its vision projector.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelFile {
    /// `model` or `mmproj`.
    pub role: String,
    /// Relative to the download base URL.
    pub path: String,
    #[serde(default)]
    pub size: Option<u64>,
    #[serde(default)]
    pub sha256: Option<String>,
}

impl ModelFile {
    /// The file name on disk: the last part of its path.
    pub fn file_name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }
}

/// What a catalogue model does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// A vision-language GGUF and its projector, for the `llama_local` backend.
    #[default]
    Vision,
    /// A CTranslate2 Whisper directory, for the `whisper_local` speech backend.
    Speech,
}

impl ModelKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            ModelKind::Vision => "vision",
            ModelKind::Speech => "speech",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogueModel {
    pub description: String,
    #[serde(default)]
    pub kind: ModelKind,
    #[serde(default)]
    pub default: bool,
    pub files: Vec<ModelFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogueFile {
    models: BTreeMap<String, CatalogueModel>,
}

/// The models vidgate knows how to fetch, by name.
pub fn catalogue() -> BTreeMap<String, CatalogueModel> {
    toml::from_str::<CatalogueFile>(CATALOGUE).map(|c| c.models).unwrap_or_default()
}

/// The catalogue's default (vision) model.
pub fn default_model() -> Option<String> {
    catalogue().into_iter().find(|(_, m)| m.default && m.kind == ModelKind::Vision).map(|(name, _)| name)
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("no model called `{name}` in the catalogue; known: {known}")]
    Unknown { name: String, known: String },
    /// No answer at all: the server (the hub or its mirror) cannot be reached.
    #[error("{url}: cannot be reached: {message}")]
    Unreachable { url: String, message: String },
    #[error("{url}: {message}")]
    Download { url: String, message: String },
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("{path}: {what} is {got}, expected {expected}; the download was removed")]
    Mismatch { path: PathBuf, what: &'static str, got: String, expected: String },
}

/// How far a model download has come, for a caller that shows it. The
/// library draws nothing itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PullProgress {
    /// A file's download begins, or resumes with `bytes` already on disk;
    /// `total` is its size when known.
    Started { file: String, bytes: u64, total: Option<u64> },
    /// `bytes` of the file are on disk.
    Received { file: String, bytes: u64 },
    /// The file is complete and its checksum verified.
    Verified { file: String },
}

/// Where [`pull_with_progress`] sends its events; a closed channel is not an error.
pub type PullSender = tokio::sync::mpsc::UnboundedSender<PullProgress>;

fn emit(progress: Option<&PullSender>, event: PullProgress) {
    if let Some(tx) = progress {
        let _ = tx.send(event);
    }
}

/// Where model `name` is kept.
pub fn model_dir(cache: &Path, name: &str) -> PathBuf {
    cache.join(name)
}

/// The default cache: `$XDG_CACHE_HOME/vidgate/models` or the platform's.
pub fn default_cache() -> PathBuf {
    directories::ProjectDirs::from("", "", "vidgate")
        .map(|d| d.cache_dir().join("models"))
        .unwrap_or_else(|| PathBuf::from(".vidgate-models"))
}

/// The installed files of a model as (model, mmproj), when all are present and intact.
pub fn installed(cache: &Path, name: &str, model: &CatalogueModel) -> Option<(PathBuf, Option<PathBuf>)> {
    let dir = model_dir(cache, name);
    if !model.files.iter().all(|f| complete(&dir.join(f.file_name()))) {
        return None;
    }
    let (main, mmproj) = paths(cache, name, model);
    main.map(|m| (m, mmproj))
}

/// Where the files of a model are (or will be, once downloaded) as (model, mmproj).
fn paths(cache: &Path, name: &str, model: &CatalogueModel) -> (Option<PathBuf>, Option<PathBuf>) {
    let dir = model_dir(cache, name);
    let of =
        |mmproj: bool| model.files.iter().find(|f| (f.role == "mmproj") == mmproj).map(|f| dir.join(f.file_name()));
    (of(false), of(true))
}

/// The bytes still to download for `model`: the pinned sizes of the files
/// that are not complete yet (a file without a pinned size counts 0).
pub fn bytes_to_fetch(cache: &Path, name: &str, model: &CatalogueModel) -> u64 {
    let dir = model_dir(cache, name);
    model.files.iter().filter(|f| !complete(&dir.join(f.file_name()))).filter_map(|f| f.size).sum()
}

/// A file is complete once its sidecar records its length (and sha256).
fn complete(path: &Path) -> bool {
    let Ok(recorded) = std::fs::read_to_string(sidecar(path)) else { return false };
    std::fs::metadata(path).is_ok_and(|m| recorded.starts_with(&format!("{} ", m.len())))
}

/// `FILE.verified`: "SIZE SHA256" of a complete, checked download.
fn sidecar(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".verified");
    PathBuf::from(name)
}

/// Where downloaded models are kept: `models.cache_dir`, else the platform's cache.
pub fn cache_dir(config: &crate::config::Config) -> PathBuf {
    config.models.cache_dir.clone().unwrap_or_else(default_cache)
}

/// The catalogue model a local profile names, as (name, entry); `None` when
/// the profile names its own files (`model_path`).
///
/// # Errors
/// No model is configured, or the one named is not in the catalogue.
pub fn catalogue_model_of(
    name: &str,
    profile: &crate::config::ProviderProfile,
) -> Result<Option<(String, CatalogueModel)>, String> {
    if profile.model_path.is_some() {
        return Ok(None);
    }
    let model = profile.model.clone().or_else(default_model).ok_or("no local model is configured")?;
    match catalogue().remove(&model) {
        Some(entry) if entry.kind == ModelKind::Speech => Err(format!(
            "providers.{name}.model `{model}` is a speech model: name it in a whisper_local profile of speech.chain"
        )),
        Some(entry) => Ok(Some((model, entry))),
        None => Err(format!(
            "providers.{name}.model `{model}` is not in the catalogue (`vidgate models list`); or set providers.{name}.model_path"
        )),
    }
}

/// A catalogue model a local profile names that is not downloaded yet.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingDownload {
    pub model: String,
    /// What is left to fetch.
    pub bytes: u64,
    /// The profile as it will be once the files are in: `model_path` and
    /// `mmproj_path` name where they will be.
    pub profile: crate::config::ProviderProfile,
}

/// What a local profile still needs to download; `None` when it names its
/// own files, its model is installed, or it names no catalogue model.
pub fn pending_download(
    name: &str,
    profile: &crate::config::ProviderProfile,
    config: &crate::config::Config,
) -> Option<PendingDownload> {
    let (model, entry) = catalogue_model_of(name, profile).ok()??;
    let cache = cache_dir(config);
    if installed(&cache, &model, &entry).is_some() {
        return None;
    }
    let mut profile = profile.clone();
    (profile.model_path, profile.mmproj_path) = paths(&cache, &model, &entry);
    Some(PendingDownload { bytes: bytes_to_fetch(&cache, &model, &entry), model, profile })
}

/// The local profile `name` with `model_path` and `mmproj_path` filled in
/// from the catalogue model it names, when that model is downloaded.
///
/// # Errors
/// The model is not in the catalogue, or not downloaded yet: the message
/// names the command that fetches it.
pub fn with_installed_files(
    name: &str,
    profile: &crate::config::ProviderProfile,
    config: &crate::config::Config,
) -> Result<crate::config::ProviderProfile, String> {
    let Some((model, entry)) = catalogue_model_of(name, profile)? else { return Ok(profile.clone()) };
    let cache = cache_dir(config);
    let Some((model_path, mmproj_path)) = installed(&cache, &model, &entry) else {
        return Err(format!(
            "the local model {model} is not downloaded: `vidgate models pull {model}` fetches it (into {})",
            cache.display()
        ));
    };
    let mut profile = profile.clone();
    profile.model_path = Some(model_path);
    profile.mmproj_path = mmproj_path;
    Ok(profile)
}

/// The Whisper directory a `whisper_local` profile uses: its `model_path`,
/// else the catalogue speech model it names, once downloaded.
///
/// # Errors
/// No model is named, the one named is not a speech model of the
/// catalogue, or it is not downloaded yet: the message names the command
/// that fetches it.
pub fn speech_model_dir(
    name: &str,
    profile: &crate::config::ProviderProfile,
    config: &crate::config::Config,
) -> Result<PathBuf, String> {
    if let Some(path) = &profile.model_path {
        return Ok(path.clone());
    }
    let model = profile.model.as_deref().ok_or_else(|| {
        format!("providers.{name}.model is not set: name a speech model (`vidgate models list`) or set model_path")
    })?;
    let entry = catalogue().remove(model).filter(|m| m.kind == ModelKind::Speech).ok_or_else(|| {
        format!(
            "providers.{name}.model `{model}` is not a speech model of the catalogue (`vidgate models list`); \
             or set providers.{name}.model_path to a CTranslate2 Whisper directory"
        )
    })?;
    let cache = cache_dir(config);
    match installed(&cache, model, &entry) {
        Some(_) => Ok(model_dir(&cache, model)),
        None => Err(format!(
            "the speech model {model} is not downloaded: `vidgate models pull {model}` fetches it (into {}), \
             or set providers.{name}.model_path to a Whisper directory (`fixtures/fetch.sh --model {model}` makes one)",
            cache.display()
        )),
    }
}

/// Fetch every file of `model` from `base_url` into `cache/name/`.
///
/// # Errors
/// The first file that could not be fetched or verified; files already
/// complete stay, and a partial download stays for the next attempt to resume.
pub async fn pull(
    name: &str,
    model: &CatalogueModel,
    base_url: &str,
    cache: &Path,
) -> Result<Vec<PathBuf>, ModelError> {
    pull_with_progress(name, model, base_url, cache, None).await
}

/// [`pull`], sending [`PullProgress`] events to `progress`.
///
/// # Errors
/// As [`pull`].
pub async fn pull_with_progress(
    name: &str,
    model: &CatalogueModel,
    base_url: &str,
    cache: &Path,
    progress: Option<&PullSender>,
) -> Result<Vec<PathBuf>, ModelError> {
    let dir = model_dir(cache, name);
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|e| ModelError::File { path: dir.clone(), message: format!("cannot create it: {e}") })?;
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(20))
        .build()
        .map_err(|e| ModelError::Download { url: base_url.into(), message: e.to_string() })?;
    let mut paths = Vec::new();
    for file in &model.files {
        let url = format!("{}/{}", base_url.trim_end_matches('/'), file.path.trim_start_matches('/'));
        let path = dir.join(file.file_name());
        fetch(&http, &url, &path, file, progress).await?;
        paths.push(path);
    }
    Ok(paths)
}

async fn fetch(
    http: &reqwest::Client,
    url: &str,
    path: &Path,
    file: &ModelFile,
    progress: Option<&PullSender>,
) -> Result<(), ModelError> {
    if complete(path) {
        return Ok(());
    }
    let part = path.with_extension("part");
    let have = tokio::fs::metadata(&part).await.map(|m| m.len()).unwrap_or(0);
    let dl = |message: String| ModelError::Download { url: url.to_string(), message };
    let mut request = http.get(url);
    if have > 0 {
        request = request.header("range", format!("bytes={have}-"));
    }
    let mut response = request.send().await.map_err(|e| {
        // The innermost cause says why ("Connection refused"); the outer ones repeat the URL.
        let mut cause: &(dyn std::error::Error + 'static) = &e;
        while let Some(inner) = cause.source() {
            cause = inner;
        }
        ModelError::Unreachable { url: url.to_string(), message: cause.to_string() }
    })?;
    let status = response.status().as_u16();
    let resumed = status == 206 && have > 0;
    if !(status == 200 || resumed) {
        return Err(dl(format!("HTTP {status}")));
    }
    let offset = if resumed { have } else { 0 };
    let total = response.content_length().map(|n| n + offset).or(file.size);
    if let (Some(total), Some(expected)) = (total, file.size) {
        if total != expected {
            return Err(dl(format!("the server offers {total} bytes, the catalogue says {expected}")));
        }
    }
    let mut out = tokio::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(resumed)
        .truncate(!resumed)
        .open(&part)
        .await
        .map_err(|e| ModelError::File { path: part.clone(), message: e.to_string() })?;
    let name = file.file_name();
    emit(progress, PullProgress::Started { file: name.to_string(), bytes: offset, total });
    let mut written = offset;
    loop {
        let chunk = match response.chunk().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            Err(e) => {
                // What was received is on disk before the error says so: a
                // resume starts from it.
                let _ = out.flush().await;
                return Err(dl(format!(
                    "interrupted after {written} bytes (run again to resume): {}",
                    crate::provider::http::error_chain(&e)
                )));
            }
        };
        out.write_all(&chunk).await.map_err(|e| ModelError::File { path: part.clone(), message: e.to_string() })?;
        written += chunk.len() as u64;
        emit(progress, PullProgress::Received { file: name.to_string(), bytes: written });
    }
    out.flush().await.map_err(|e| ModelError::File { path: part.clone(), message: e.to_string() })?;
    drop(out);
    if let Some(total) = total {
        if written != total {
            return Err(dl(format!("got {written} of {total} bytes (run again to resume)")));
        }
    }
    let digest = hash_file(&part).await.map_err(|e| ModelError::File { path: part.clone(), message: e.to_string() })?;
    if let Some(expected) = &file.sha256 {
        if !expected.eq_ignore_ascii_case(&digest) {
            let _ = tokio::fs::remove_file(&part).await;
            return Err(ModelError::Mismatch {
                path: path.to_path_buf(),
                what: "sha256",
                got: digest,
                expected: expected.clone(),
            });
        }
    }
    tokio::fs::rename(&part, path)
        .await
        .map_err(|e| ModelError::File { path: path.to_path_buf(), message: e.to_string() })?;
    tokio::fs::write(sidecar(path), format!("{written} {digest}\n"))
        .await
        .map_err(|e| ModelError::File { path: path.to_path_buf(), message: e.to_string() })?;
    emit(progress, PullProgress::Verified { file: name.to_string() });
    Ok(())
}

/// The sha256 of a file, in hex, read off the async runtime.
pub async fn hash_file(path: &Path) -> std::io::Result<String> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut file = std::fs::File::open(&path)?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                return Ok(hex::encode(hasher.finalize()));
            }
            hasher.update(&buf[..n]);
        }
    })
    .await
    .map_err(std::io::Error::other)?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalogue_parses_and_has_one_default_with_a_projector() {
        let models = catalogue();
        let vision: Vec<_> = models.iter().filter(|(_, m)| m.kind == ModelKind::Vision).collect();
        assert!(vision.len() >= 4, "{models:?}");
        let defaults: Vec<_> = models.iter().filter(|(_, m)| m.default).collect();
        assert_eq!(defaults.len(), 1);
        for (name, m) in vision {
            let roles: Vec<&str> = m.files.iter().map(|f| f.role.as_str()).collect();
            assert_eq!(roles, ["model", "mmproj"], "{name}");
            assert!(m.files.iter().all(|f| f.file_name().ends_with(".gguf")), "{name}");
            for f in &m.files {
                let sha = f.sha256.as_deref().unwrap_or_default();
                assert!(
                    sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
                    "{name}: {} pins no sha256",
                    f.path
                );
                assert!(f.size.is_some_and(|n| n > 1_000_000), "{name}: {} pins no size", f.path);
            }
        }
        assert_eq!(default_model().as_deref(), Some("smolvlm2-256m-video-instruct"));
    }

    #[test]
    fn a_speech_model_is_a_whisper_directory_found_once_downloaded() {
        let models = catalogue();
        let whisper = &models["whisper-base"];
        assert_eq!(whisper.kind, ModelKind::Speech);
        let mut names: Vec<&str> = whisper.files.iter().map(ModelFile::file_name).collect();
        names.sort_unstable();
        assert_eq!(names, ["config.json", "model.bin", "preprocessor_config.json", "tokenizer.json", "vocabulary.txt"]);
        let cache = tempfile::tempdir().unwrap();
        let mut config = crate::config::Config::default();
        config.models.cache_dir = Some(cache.path().to_path_buf());
        let profile = crate::config::ProviderProfile { model: Some("whisper-base".into()), ..Default::default() };
        let err = speech_model_dir("whisper-local", &profile, &config).unwrap_err();
        assert!(err.contains("`vidgate models pull whisper-base`"), "{err}");
        let dir = model_dir(cache.path(), "whisper-base");
        std::fs::create_dir_all(&dir).unwrap();
        for name in names {
            std::fs::write(dir.join(name), b"x").unwrap();
            std::fs::write(sidecar(&dir.join(name)), "1 00\n").unwrap();
        }
        assert_eq!(speech_model_dir("whisper-local", &profile, &config).unwrap(), dir);
        // A vision model is no speech model; model_path wins.
        let vision = crate::config::ProviderProfile { model: Some("smolvlm2-256m-video-instruct".into()), ..profile };
        let err = speech_model_dir("w", &vision, &config).unwrap_err();
        assert!(err.contains("is not a speech model"), "{err}");
        let own = crate::config::ProviderProfile { model_path: Some("/m".into()), ..vision };
        assert_eq!(speech_model_dir("w", &own, &config).unwrap(), PathBuf::from("/m"));
    }
}
