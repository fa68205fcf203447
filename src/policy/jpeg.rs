//! RGB frames become JPEG for a backend that does not take RGB, so one
//! extraction can feed a chain that mixes the local model (RGB) with cloud
//! APIs (JPEG).

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
        if self.inner.capabilities().rgb_frames || !frames.iter().any(|f| matches!(f.data, FrameData::Rgb(_))) {
            return Ok(None);
        }
        let converted: Result<Vec<Frame>, ProviderError> = frames
            .iter()
            .map(|f| match &f.data {
                FrameData::Jpeg(_) => Ok(f.clone()),
                FrameData::Rgb(rgb) => encode_jpeg(rgb, f.width, f.height, self.quality)
                    .map(|jpeg| Frame { data: FrameData::Jpeg(jpeg.into()), ..f.clone() })
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
    forward_to_inner!("JpegFrames");

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::scripted::ScriptedProvider;
    use crate::schema::{Task, TimeRange};

    /// Not the config's default (85), so a conversion at another quality shows.
    const QUALITY: u8 = 40;

    fn frame(index: u32, pts_ms: u64, (width, height): (u32, u32), data: FrameData) -> Frame {
        Frame { index, pts_ms, width, height, data }
    }

    /// `width`×`height` RGB pixels, no two neighbours alike.
    fn pixels(width: u32, height: u32) -> Vec<u8> {
        (0..width * height * 3).map(|i| (i * 37 % 251) as u8).collect()
    }

    fn job(input: JobInput) -> Job {
        Job {
            task: Task::Describe,
            input,
            prompt: "Describe the frames.".into(),
            prompt_version: "chunk@1".into(),
            max_output_tokens: 64,
            span: Some(TimeRange { start_ms: 0, end_ms: 10_000 }),
        }
    }

    fn frames_job(frames: Vec<Frame>) -> Job {
        job(JobInput::Frames(frames.into()))
    }

    fn wrapped(inner: ScriptedProvider) -> (Arc<ScriptedProvider>, JpegFrames) {
        let inner = Arc::new(inner);
        let wrapper = JpegFrames::new(inner.clone(), QUALITY);
        (inner, wrapper)
    }

    /// The one job the inner provider was given when the wrapper ran `job`.
    async fn passed_on(job: &Job) -> Job {
        let (inner, wrapper) = wrapped(ScriptedProvider::new("cloud"));
        wrapper.run(job).await.expect("the inner provider answers");
        let mut jobs = inner.jobs();
        assert_eq!(jobs.len(), 1, "one call to the inner provider");
        jobs.remove(0)
    }

    fn frames_of(job: &Job) -> Vec<Frame> {
        let JobInput::Frames(frames) = &job.input else { panic!("not a frames job: {job:?}") };
        frames.to_vec()
    }

    #[tokio::test]
    async fn rgb_frames_reach_the_inner_provider_as_jpeg_with_their_times_and_sizes() {
        let (small, large) = (pixels(4, 2), pixels(6, 4));
        let sent = frames_job(vec![
            frame(3, 1_500, (4, 2), FrameData::Rgb(small.clone())),
            frame(4, 2_500, (6, 4), FrameData::Rgb(large.clone())),
        ]);
        let got = frames_of(&passed_on(&sent).await);
        let expected = [(3, 1_500, (4, 2), &small), (4, 2_500, (6, 4), &large)];
        assert_eq!(got.len(), expected.len());
        for (f, (index, pts_ms, (width, height), rgb)) in got.iter().zip(expected) {
            assert_eq!((f.index, f.pts_ms, f.width, f.height), (index, pts_ms, width, height));
            let FrameData::Jpeg(jpeg) = &f.data else { panic!("frame {index} is still RGB") };
            assert!(jpeg.starts_with(&[0xFF, 0xD8]) && jpeg.ends_with(&[0xFF, 0xD9]), "frame {index}: not a JPEG");
            let at_quality = encode_jpeg(rgb, width, height, QUALITY).unwrap();
            assert!(jpeg[..] == at_quality[..], "frame {index}: not these pixels at this size and quality");
        }
    }

    #[tokio::test]
    async fn jpeg_frames_pass_through_byte_identical() {
        let jpeg = frame(0, 0, (4, 2), FrameData::Jpeg(vec![0xFF, 0xD8, 1, 2, 3, 0xFF, 0xD9].into()));
        let rgb = frame(1, 1_000, (4, 2), FrameData::Rgb(pixels(4, 2)));
        // Alone, and beside an RGB frame that is converted.
        assert_eq!(frames_of(&passed_on(&frames_job(vec![jpeg.clone()])).await), std::slice::from_ref(&jpeg));
        let mixed = frames_of(&passed_on(&frames_job(vec![jpeg.clone(), rgb])).await);
        assert_eq!(mixed[0], jpeg);
        assert!(matches!(mixed[1].data, FrameData::Jpeg(_)), "{:?}", mixed[1]);
    }

    #[tokio::test]
    async fn text_and_video_jobs_pass_through_unchanged() {
        let text = job(JobInput::Text("<observations>\n[00:01.000] a dog\n</observations>".into()));
        let video = job(JobInput::Video {
            path: "clip.mp4".into(),
            range: None,
            duration_ms: 10_000,
            size_bytes: 1_234,
            fps: None,
            sha256: None,
        });
        for sent in [text, video] {
            assert_eq!(format!("{:?}", passed_on(&sent).await), format!("{sent:?}"));
        }
    }

    #[tokio::test]
    async fn a_backend_that_takes_rgb_gets_the_rgb_frames_unchanged() {
        let local = ScriptedProvider::new("local")
            .with_capabilities(crate::provider::Capabilities { rgb_frames: true, ..Default::default() });
        let (inner, wrapper) = wrapped(local);
        let rgb = frames_job(vec![frame(0, 0, (4, 2), FrameData::Rgb(pixels(4, 2)))]);
        wrapper.run(&rgb).await.unwrap();
        assert_eq!(frames_of(&inner.jobs()[0]), frames_of(&rgb));
    }

    #[test]
    fn the_estimate_is_the_inner_providers() {
        let (inner, wrapper) = wrapped(ScriptedProvider::new("cloud").with_cost_per_call(0.0123));
        let rgb = frames_job(vec![frame(0, 0, (4, 2), FrameData::Rgb(pixels(4, 2)))]);
        let estimate = wrapper.estimate(&rgb).unwrap();
        assert_eq!(estimate, inner.estimate(&rgb).unwrap());
        assert_eq!(estimate.cost_usd, 0.0123);
        assert_eq!(inner.calls(), 0, "an estimate runs nothing");
    }

    #[tokio::test]
    async fn an_rgb_buffer_too_short_for_its_size_is_a_fatal_error_naming_the_frame() {
        let (inner, wrapper) = wrapped(ScriptedProvider::new("cloud"));
        let short = frames_job(vec![
            frame(6, 0, (4, 2), FrameData::Rgb(pixels(4, 2))),
            frame(7, 1_000, (4, 2), FrameData::Rgb(vec![0; 4 * 2 * 3 - 1])),
        ]);
        let e = wrapper.run(&short).await.unwrap_err();
        assert_eq!(e.class, ErrorClass::Fatal, "{e}");
        assert_eq!(e.provider, "cloud");
        assert!(e.message.starts_with("frame 7: JPEG"), "{e}");
        assert_eq!(inner.calls(), 0, "nothing is sent");
    }
}
