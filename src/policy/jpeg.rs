//! RGB frames become JPEG for a backend that takes JPEG, so one extraction can
//! feed a chain that mixes the local model (RGB) with cloud APIs (JPEG).

use std::sync::Arc;

use async_trait::async_trait;

use crate::media::{encode_jpeg, Frame, FrameData};
use crate::provider::{ErrorClass, Estimate, Job, JobInput, Provider, ProviderError, ProviderOutput};

pub struct JpegFrames {
    inner: Arc<dyn Provider>,
    quality: u8,
}

impl JpegFrames {
    pub fn new(inner: Arc<dyn Provider>, quality: u8) -> Self {
        Self { inner, quality }
    }

    fn convert(&self, job: &Job) -> Result<Option<Job>, ProviderError> {
        let JobInput::Frames(frames) = &job.input else { return Ok(None) };
        if !frames.iter().any(|f| matches!(f.data, FrameData::Rgb(_))) {
            return Ok(None);
        }
        let converted: Result<Vec<Frame>, ProviderError> = frames
            .iter()
            .map(|f| match &f.data {
                FrameData::Jpeg(_) => Ok(f.clone()),
                FrameData::Rgb(rgb) => encode_jpeg(rgb, f.width, f.height, self.quality)
                    .map(|jpeg| Frame { data: FrameData::Jpeg(jpeg), ..f.clone() })
                    .map_err(|e| {
                        ProviderError::new(self.inner.id(), ErrorClass::Fatal, format!("frame {}: JPEG: {e}", f.index))
                    }),
            })
            .collect();
        Ok(Some(Job { input: JobInput::Frames(converted?.into()), ..job.clone() }))
    }
}

#[async_trait]
impl Provider for JpegFrames {
    forward_to_inner!();

    fn estimate(&self, job: &Job) -> Result<Estimate, ProviderError> {
        // Token counts depend on the frames' size, not their encoding.
        self.inner.estimate(job)
    }

    async fn run(&self, job: &Job) -> Result<ProviderOutput, ProviderError> {
        match self.convert(job)? {
            Some(converted) => self.inner.run(&converted).await,
            None => self.inner.run(job).await,
        }
    }
}
