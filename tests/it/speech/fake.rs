//! A fake `/v1/audio/transcriptions` server: it reads the multipart form with
//! a real parser (axum's), "hears" where the WAV it was sent is loud, and
//! answers in the `verbose_json` shape of OpenAI's API reference (no
//! transcription recording is among the recorded fixtures), with one segment
//! over the loud part, saying what it was told to.

use std::sync::{Arc, Mutex};

use axum::extract::{Multipart, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::util::{block_on, runtime};

/// What one request carried.
#[derive(Debug, Clone, Default)]
pub struct Heard {
    pub model: String,
    pub format: String,
    pub language: Option<String>,
    pub authorization: Option<String>,
    /// The WAV's length, and where it is loud (ms from its start).
    pub wav_ms: u64,
    pub loud: Option<(u64, u64)>,
    pub sample_rate: u32,
}

struct Shared {
    said: String,
    /// Answer every request with this status and an error body instead.
    status: Option<u16>,
    heard: Mutex<Vec<Heard>>,
}

pub struct FakeWhisper {
    /// The API root, `http://127.0.0.1:PORT/v1`.
    pub url: String,
    shared: Arc<Shared>,
}

impl FakeWhisper {
    /// A server that transcribes every loud stretch as `said`.
    pub fn start(said: &str) -> Self {
        Self::serve(said, None)
    }

    /// A server that answers every request with `status` and OpenAI's error body.
    pub fn failing(status: u16) -> Self {
        Self::serve("", Some(status))
    }

    fn serve(said: &str, status: Option<u16>) -> Self {
        let shared = Arc::new(Shared { said: said.into(), status, heard: Mutex::default() });
        let app = Router::new().route("/v1/audio/transcriptions", post(answer)).with_state(shared.clone());
        let listener = block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        runtime().spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url: format!("http://{addr}/v1"), shared }
    }

    /// Every request so far.
    pub fn heard(&self) -> Vec<Heard> {
        self.shared.heard.lock().unwrap().clone()
    }
}

async fn answer(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    mut form: Multipart,
) -> (StatusCode, Json<Value>) {
    let mut heard = Heard {
        authorization: headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_string),
        ..Heard::default()
    };
    while let Ok(Some(field)) = form.next_field().await {
        let name = field.name().unwrap_or_default().to_string();
        let bytes = field.bytes().await.unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        match name.as_str() {
            "model" => heard.model = text,
            "response_format" => heard.format = text,
            "language" => heard.language = Some(text),
            "file" => {
                let Ok(mut wav) = hound::WavReader::new(std::io::Cursor::new(bytes.to_vec())) else {
                    return (StatusCode::BAD_REQUEST, Json(error("not a WAV file")));
                };
                let rate = wav.spec().sample_rate;
                let samples: Vec<i16> = wav.samples::<i16>().map(|s| s.unwrap_or(0)).collect();
                let ms = |i: usize| i as u64 * 1000 / u64::from(rate.max(1));
                heard.sample_rate = rate;
                heard.wav_ms = ms(samples.len());
                let loud = |s: &i16| s.unsigned_abs() > 1000;
                heard.loud =
                    samples.iter().position(loud).zip(samples.iter().rposition(loud)).map(|(a, b)| (ms(a), ms(b + 1)));
            }
            _ => {}
        }
    }
    shared.heard.lock().unwrap().push(heard.clone());
    if let Some(status) = shared.status {
        let code = StatusCode::from_u16(status).unwrap();
        // Quotes the key it was sent back, as a hostile or careless server might.
        let key = heard.authorization.as_deref().and_then(|a| a.strip_prefix("Bearer ")).unwrap_or("none");
        return (code, Json(error(&format!("Incorrect API key provided: {key}. You can find your API key at ..."))));
    }
    let seconds = heard.wav_ms as f64 / 1000.0;
    let segments: Vec<Value> = heard
        .loud
        .iter()
        .map(|(a, b)| {
            json!({
                "id": 0, "seek": 0, "start": *a as f64 / 1000.0, "end": *b as f64 / 1000.0,
                "text": format!(" {}", shared.said), "tokens": [50364, 440],
                "temperature": 0.0, "avg_logprob": -0.21, "compression_ratio": 1.1, "no_speech_prob": 0.01
            })
        })
        .collect();
    let text = if segments.is_empty() { String::new() } else { shared.said.clone() };
    (
        StatusCode::OK,
        Json(json!({
            "task": "transcribe", "language": "english", "duration": seconds, "text": text,
            "segments": segments, "usage": {"type": "duration", "seconds": seconds.ceil()}
        })),
    )
}

fn error(message: &str) -> Value {
    json!({"error": {"message": message, "type": "invalid_request_error", "param": null, "code": "invalid_api_key"}})
}
