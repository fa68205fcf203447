//! The video a run reads: a path, bytes or a URL made into a local file.

use super::*;

impl Gateway {
    /// The request's video as a local file.
    pub(super) async fn source(
        &self,
        source: &VideoSource,
        progress: Option<&ProgressSender>,
    ) -> Result<Source, GatewayError> {
        match source {
            VideoSource::Path { path } => Ok(Source { path: path.clone(), _temp: None, _download: None }),
            VideoSource::Bytes { data, format } => {
                let suffix = format!(".{}", format.as_deref().unwrap_or("mp4").trim_start_matches('.'));
                let mut temp = tempfile::Builder::new().prefix("vidgate-").suffix(&suffix).tempfile().map_err(|e| {
                    GatewayError::Input(format!("cannot hold the video's bytes in a temporary file: {e}"))
                })?;
                std::io::Write::write_all(&mut temp, data)
                    .map_err(|e| GatewayError::Input(format!("cannot write the video's bytes: {e}")))?;
                Ok(Source { path: temp.path().to_path_buf(), _temp: Some(temp), _download: None })
            }
            VideoSource::Url { url } => {
                let downloaded = crate::fetch::fetch(url, &self.config.fetch, progress).await?;
                Ok(Source { path: downloaded.path().to_path_buf(), _temp: None, _download: Some(downloaded) })
            }
        }
    }
}

/// The video file a run reads; a temporary copy (bytes, a download) is
/// deleted when the run ends.
pub(super) struct Source {
    pub(super) path: PathBuf,
    _temp: Option<tempfile::NamedTempFile>,
    _download: Option<crate::fetch::Downloaded>,
}

/// The request's video, as a person would name it (never a URL's query).
pub(super) fn source_name(source: &VideoSource) -> String {
    match source {
        VideoSource::Path { path } => path.display().to_string(),
        VideoSource::Url { .. } => "a URL".into(),
        VideoSource::Bytes { data, .. } => format!("{} bytes given", data.len()),
    }
}
