//! The OpenAI-compatible backend against a real server: llama.cpp's
//! `llama-server`, started and stopped here, on the real Gemma 3 270M (text
//! only) and on a tiny vision model the tests generate.
//!
//! Needs `scripts/build-llama-server.sh` (the server binary), `fixtures/fetch.sh
//! --model gemma3-270m` and Python with `gguf` and `numpy` (the generator).
//! Each test fails when one is missing, unless `VIDGATE_ALLOW_SKIP=1`, where
//! it skips with a message.

#[allow(dead_code)]
#[path = "it/util.rs"]
mod util;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vidgate::config::{AuthScheme, Config, Price, Protocol, ProviderProfile};
use vidgate::media::FrameFormat;
use vidgate::policy::{self, AttemptLog, Budget};
use vidgate::provider::openai_compat::OpenAiCompat;
use vidgate::provider::{Job, JobInput, Provider};
use vidgate::schema::{SamplingMode, Task};

use util::*;

fn server_binary() -> Option<PathBuf> {
    let bin = std::env::var_os("VIDGATE_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache_dir().join("tools"))
        .join("llama-11434/bin/llama-server");
    if bin.is_file() {
        Some(bin)
    } else {
        require(&format!("{} (run scripts/build-llama-server.sh)", bin.display()))
    }
}

/// The generated tiny vision model: (model, mmproj).
fn tiny_vlm(dir: &Path) -> Option<(PathBuf, PathBuf)> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/tiny_vlm/generate.py");
    let status = Command::new("python3").arg(&script).arg(dir).status();
    match status {
        Ok(s) if s.success() => Some((dir.join("tiny-vlm.gguf"), dir.join("tiny-vlm-mmproj.gguf"))),
        _ => require("the tiny vision model (fixtures/tiny_vlm/generate.py needs python3 with gguf and numpy)"),
    }
}

/// A running llama-server, killed when dropped.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(bin: &Path, model: &Path, mmproj: Option<&Path>) -> Server {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut cmd = Command::new(bin);
        cmd.arg("-m").arg(model).args([
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "-c",
            "2048",
            "-t",
            "2",
            "-np",
            "1",
        ]);
        if let Some(mmproj) = mmproj {
            cmd.arg("--mmproj").arg(mmproj);
        }
        cmd.env("OMP_WAIT_POLICY", "passive").stdout(Stdio::null()).stderr(Stdio::null());
        let server = Server { child: cmd.spawn().expect("llama-server starts"), port };
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(120) {
            let ready = block_on(async {
                reqwest::get(format!("http://127.0.0.1:{port}/health"))
                    .await
                    .map(|r| r.status().is_success())
                    .unwrap_or(false)
            });
            if ready {
                return server;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("llama-server did not become ready in 120 s");
    }

    fn provider(&self) -> (Arc<dyn Provider>, ProviderProfile) {
        let profile = ProviderProfile {
            protocol: Some(Protocol::Openai),
            base_url: Some(format!("http://127.0.0.1:{}/v1", self.port)),
            auth: Some(AuthScheme::None),
            model: Some("local".into()),
            price: Some(Price {
                input_per_mtok: 0.0,
                output_per_mtok: 0.0,
                cached_input_per_mtok: None,
                audio_input_per_mtok: None,
            }),
            timeout_s: Some(120.0),
            ..ProviderProfile::default()
        };
        let mut config = Config::default();
        config.retry.max_attempts = 2;
        let backend = Arc::new(OpenAiCompat::from_profile("llama-server", &profile, &config).unwrap());
        (policy::standard_stack(backend, &profile, &config, Budget::new(0.0), AttemptLog::default()), profile)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn frame_job(count: u32) -> Job {
    let frames =
        frames_as(&testsrc_10s(), &plan(SamplingMode::Count { count }, 128), FrameFormat::Jpeg { quality: 80 })
            .unwrap();
    Job {
        task: Task::Describe,
        input: JobInput::Frames(frames.into()),
        prompt: "Describe these frames.".into(),
        prompt_version: "chunk@1".into(),
        max_output_tokens: 8,
        span: None,
    }
}

#[test]
fn a_text_model_answers_text_and_refuses_images_with_its_own_error() {
    let (Some(bin), Some(model)) = (server_binary(), gemma()) else { return };
    let server = Server::start(&bin, &model, None);
    let (provider, _) = server.provider();

    let text = Job {
        task: Task::Describe,
        input: JobInput::Text("A red car passes a bakery.".into()),
        prompt: "Summarise:".into(),
        prompt_version: "story@1".into(),
        max_output_tokens: 16,
        span: None,
    };
    let out = block_on(provider.run(&text)).expect("text generation works");
    assert!(!out.observations[0].text.is_empty());
    assert!(out.usage.output_tokens > 0 && out.usage.cost_usd == 0.0, "{:?}", out.usage);

    let err = block_on(provider.run(&frame_job(1))).expect_err("a text-only model takes no image");
    // llama-server answers 500 "image input is not supported": not worth a retry.
    assert!(err.should_fall_back(), "{err}");
    assert_eq!(err.status, Some(500), "the server's own status: {err:?}");
    assert!(err.to_string().contains("image input is not supported"), "the server's own message: {err}");
}

#[test]
fn a_generated_vision_model_describes_frames() {
    let Some(bin) = server_binary() else { return };
    let dir = tempfile::tempdir().unwrap();
    let Some((model, mmproj)) = tiny_vlm(dir.path()) else { return };
    let server = Server::start(&bin, &model, Some(&mmproj));
    let (provider, _) = server.provider();
    let out = block_on(provider.run(&frame_job(2))).expect("images are accepted");
    let o = &out.observations[0];
    assert!(out.usage.input_tokens > 32, "two images of 16 tokens each and the prompt: {:?}", out.usage);
    assert!(out.usage.output_tokens > 0);
    assert!(o.range.end_ms > o.range.start_ms);
}

/// The pinned llama-server (b11434, built with MTMD_VIDEO) takes a whole
/// video as `input_video` and samples it at its own `--video-fps` (4 by
/// default); the estimate of frames × tokens per frame covers what it counts.
#[test]
fn a_generated_vision_model_takes_a_video_as_input_video() {
    let Some(bin) = server_binary() else { return };
    let dir = tempfile::tempdir().unwrap();
    let Some((model, mmproj)) = tiny_vlm(dir.path()) else { return };
    let server = Server::start(&bin, &model, Some(&mmproj));
    let (_, mut profile) = server.provider();
    let video = vidgate::config::ModelProfile {
        native_video: Some(true),
        video_part: Some(vidgate::config::VideoPart::InputVideo),
        video_sampling: Some(vidgate::config::VideoSampling::None),
        video_fps: Some(4.0),
        // A 64-px image is 16 tokens for the generated projector.
        video_tokens_per_frame: Some(16),
        ..Default::default()
    };
    profile.models.insert("local".into(), video);
    let backend = OpenAiCompat::from_profile("llama-server", &profile, &Config::default()).unwrap();
    assert!(backend.capabilities().native_video);
    let clip = testsrc_10s();
    let job = Job {
        task: Task::Describe,
        input: JobInput::Video {
            size_bytes: std::fs::metadata(&clip).unwrap().len(),
            path: clip,
            range: None,
            duration_ms: 10_000,
            fps: None,
            sha256: None,
        },
        prompt: "Describe this video.".into(),
        prompt_version: "timeline@1".into(),
        max_output_tokens: 8,
        span: None,
    };
    let estimate = backend.estimate(&job).unwrap();
    let out = block_on(backend.run(&job)).expect("the video is accepted");
    // 10 s at 4 fps: 40 frames of 16 tokens, and the prompt and time marks.
    assert!(out.usage.input_tokens >= 40 * 16, "{:?}", out.usage);
    assert!(out.usage.input_tokens <= estimate.input_tokens + 64, "{:?} vs {estimate:?}", out.usage);
    assert_eq!(out.observations[0].range, vidgate::schema::TimeRange::new(0, 10_000).unwrap());
}
