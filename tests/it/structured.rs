//! The same timeline answers through every backend: the same schema violation
//! gets the same treatment everywhere, decided by whether the backend holds its
//! output to the schema (a response schema, a grammar) or not.

use std::sync::Arc;

use serde_json::{json, Value};
use wiremock::{Mock, MockServer, ResponseTemplate};

use vidgate::config::{AuthScheme, Config, ModelProfile, Price, Protocol, ProviderProfile};
use vidgate::provider::gemini::Gemini;
use vidgate::provider::openai_compat::OpenAiCompat;
use vidgate::provider::structured::{self, Constraint, RawAnswer};
use vidgate::provider::{ErrorClass, Job, JobInput, Provider, ProviderError, ProviderOutput};
use vidgate::schema::{Task, TimeRange, Usage};

use crate::util::*;

const KEY: &str = "sk-structured-test-41d0";
/// Every call reads 1000 tokens and writes 50, at $1 and $2 per million.
const PRICE: Price =
    Price { input_per_mtok: 1.0, output_per_mtok: 2.0, cached_input_per_mtok: None, audio_input_per_mtok: None };

/// The answers every backend is fed, each on every call.
const CASES: [(&str, &str); 4] = [
    ("not JSON", "The door opens, then a car passes."),
    ("outside the span", r#"{"events":[{"start":"00:05","end":"00:30","text":"A car passes."}]}"#),
    ("missing fields", r#"{"events":[{"start":"00:01","text":"A door opens."}]}"#),
    ("valid", r#"{"events":[{"start":"00:01","end":"00:03","text":"A door opens."}]}"#),
];

/// What a user of the backend sees, without the backend's name.
#[derive(Debug, PartialEq)]
enum Outcome {
    Events { events: Vec<(u64, u64, String)>, usage: (u64, u64, i64) },
    Failed { class: ErrorClass, message: String, maybe_billed: bool, billed: Option<(u64, u64, i64)> },
}

fn tokens(u: &Usage) -> (u64, u64, i64) {
    (u.input_tokens, u.output_tokens, (u.cost_usd * 1e9).round() as i64)
}

fn outcome(result: Result<ProviderOutput, ProviderError>) -> Outcome {
    match result {
        Ok(out) => Outcome::Events {
            events: out.observations.into_iter().map(|o| (o.range.start_ms, o.range.end_ms, o.text)).collect(),
            usage: tokens(&out.usage),
        },
        Err(e) => Outcome::Failed {
            class: e.class,
            message: e.message,
            maybe_billed: e.maybe_billed,
            billed: e.billed.as_deref().map(tokens),
        },
    }
}

fn job() -> Job {
    Job {
        task: Task::Timeline,
        input: JobInput::Text("[00:01.000] A door opens.".into()),
        prompt: "List the events as JSON.".into(),
        prompt_version: "timeline@2".into(),
        max_output_tokens: 200,
        span: TimeRange::new(0, 10_000),
    }
}

fn profile(protocol: Protocol, server: &MockServer, schema: bool) -> ProviderProfile {
    let var = "VIDGATE_STRUCTURED_TEST_KEY";
    std::env::set_var(var, KEY);
    let (base, auth) = match protocol {
        Protocol::Gemini => (server.uri(), AuthScheme::GoogApiKey),
        _ => (format!("{}/v1", server.uri()), AuthScheme::Bearer),
    };
    let model = ModelProfile { json_schema: Some(schema), ..ModelProfile::default() };
    ProviderProfile {
        protocol: Some(protocol),
        base_url: Some(base),
        api_key_env: Some(var.into()),
        auth: Some(auth),
        model: Some("fake-model".into()),
        price: Some(PRICE),
        models: [("fake-model".to_string(), model)].into_iter().collect(),
        ..ProviderProfile::default()
    }
}

/// `text` in the shape of each protocol's answer.
fn body(protocol: Protocol, text: &str) -> Value {
    match protocol {
        Protocol::Gemini => json!({
            "candidates": [{"content": {"parts": [{"text": text}], "role": "model"}, "finishReason": "STOP"}],
            "modelVersion": "fake-model",
            "usageMetadata": {"promptTokenCount": 1000, "candidatesTokenCount": 50, "totalTokenCount": 1050,
                              "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 1000}]}
        }),
        _ => json!({
            "id": "chatcmpl-structured", "object": "chat.completion", "created": 1_730_000_000, "model": "fake-model",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text, "refusal": null},
                         "logprobs": null, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1000, "completion_tokens": 50, "total_tokens": 1050}
        }),
    }
}

/// `text` through the real backend of `protocol` against a fake answering it
/// on every call: the outcome and the calls made.
async fn through_backend(protocol: Protocol, schema: bool, text: &str) -> (Outcome, usize) {
    let server = MockServer::start().await;
    Mock::given(wiremock::matchers::method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(body(protocol, text)))
        .mount(&server)
        .await;
    let profile = profile(protocol, &server, schema);
    let config = Config::default();
    let backend: Arc<dyn Provider> = match protocol {
        Protocol::Gemini => Arc::new(Gemini::from_profile("fake", &profile, &config).unwrap()),
        _ => Arc::new(OpenAiCompat::from_profile("fake", &profile, &config).unwrap()),
    };
    let result = backend.run(&job()).await;
    (outcome(result), server.received_requests().await.unwrap().len())
}

/// `text` through the layer as a backend with `constraint` calls it (the local
/// model: a grammar, or free text with `json_grammar = false`).
async fn through_layer(constraint: Constraint, text: &str) -> (Outcome, usize) {
    let calls = std::sync::atomic::AtomicUsize::new(0);
    let result = structured::answer("fake", &job(), constraint, |_| {
        calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let usage = Usage { input_tokens: 1000, output_tokens: 50, cost_usd: 1000.0 * 1e-6 + 50.0 * 2e-6 };
        async move { Ok(RawAnswer { text: text.to_string(), usage, model: "fake-model".into(), warnings: Vec::new() }) }
    })
    .await;
    (outcome(result), calls.into_inner())
}

#[test]
fn the_same_schema_violation_gets_the_same_treatment_on_every_backend() {
    runtime().block_on(async {
        for (case, text) in CASES {
            let valid = case == "valid";
            let held = [
                ("openai with a schema", through_backend(Protocol::Openai, true, text).await),
                ("gemini with a schema", through_backend(Protocol::Gemini, true, text).await),
                ("local with a grammar", through_layer(Constraint::Grammar, text).await),
            ];
            let free = [
                ("openai without a schema", through_backend(Protocol::Openai, false, text).await),
                ("gemini without a schema", through_backend(Protocol::Gemini, false, text).await),
                ("local without a grammar", through_layer(Constraint::Free, text).await),
            ];
            for (rows, calls) in [(&held, 1), (&free, if valid { 1 } else { 2 })] {
                let (first, (expected, _)) = (rows[0].0, &rows[0].1);
                for (name, (got, made)) in rows.iter() {
                    assert_eq!(got, expected, "{case}: {name} differs from {first}");
                    assert_eq!(*made, calls, "{case}: {name} made {made} calls");
                }
                match expected {
                    Outcome::Events { events, .. } => {
                        assert!(valid, "{case}: kept as {events:?}");
                        assert_eq!(events, &[(1_000, 3_000, "A door opens.".to_string())]);
                    }
                    Outcome::Failed { class, message, maybe_billed, billed } => {
                        assert!(!valid && *class == ErrorClass::FallBack && *maybe_billed, "{case}: {message}");
                        assert!(message.starts_with("unit failed: "), "{case}: {message}");
                        let n = calls as u64;
                        assert_eq!(*billed, Some((1000 * n, 50 * n, 1_100_000 * n as i64)), "{case}: billed so far");
                    }
                }
            }
        }
    });
}

#[test]
fn every_backend_reserves_for_the_repair_alike() {
    runtime().block_on(async {
        let server = MockServer::start().await;
        let config = Config::default();
        for schema in [true, false] {
            let openai = OpenAiCompat::from_profile("o", &profile(Protocol::Openai, &server, schema), &config).unwrap();
            let gemini = Gemini::from_profile("g", &profile(Protocol::Gemini, &server, schema), &config).unwrap();
            let mut describe = job();
            describe.task = Task::Describe;
            for backend in [&openai as &dyn Provider, &gemini] {
                let one = backend.estimate(&describe).unwrap();
                let timeline = backend.estimate(&job()).unwrap();
                let calls = structured::calls(&job(), Constraint::schema_if(schema));
                assert_eq!(timeline.output_tokens, u64::from(calls) * one.output_tokens, "{}", backend.id());
                assert!(timeline.cost_usd > f64::from(calls) * one.cost_usd * 0.99, "{}: {timeline:?}", backend.id());
                assert_eq!(calls, if schema { 1 } else { 2 });
            }
        }
    });
}
