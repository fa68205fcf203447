//! The thread that owns every llama type: it loads the model on its first
//! request, then serves requests one at a time until its channel closes.

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex, OnceLock};

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaModel};
use llama_cpp_2::mtmd::{mtmd_default_marker, MtmdBitmap, MtmdContext, MtmdContextParams, MtmdInputText};
use llama_cpp_2::token::LlamaToken;
use tokio::sync::oneshot;

use super::engine::{Answer, Engine, Stop};
use super::prompt::{ChatWrap, CONTENT_SENTINEL};
use super::runtime::{self, reason, with_captured_errors};
use super::sampling::Sampling;
use super::{ModelFacts, Timings};
use crate::provider::{ErrorClass, Job, ProviderError};

/// A context when the profile names none, unless the model was trained on less.
pub(super) const DEFAULT_CONTEXT: u32 = 4096;

/// What the worker needs to load the model, from the profile.
#[derive(Debug, Clone)]
pub(super) struct Settings {
    pub provider: String,
    pub model_name: String,
    pub model_path: PathBuf,
    pub mmproj_path: Option<PathBuf>,
    pub threads: u32,
    pub gpu_layers: u32,
    pub context_tokens: Option<u32>,
    pub sampling: Sampling,
    /// Hold timeline and find jobs to their JSON with a grammar.
    pub json_grammar: bool,
}

pub(super) enum Request {
    /// Load now (or report why loading failed).
    Load {
        reply: oneshot::Sender<Result<(), ProviderError>>,
    },
    Run {
        job: Job,
        reply: oneshot::Sender<Result<Vec<Answer>, ProviderError>>,
    },
}

/// What the worker shares with the async side.
#[derive(Default)]
pub(super) struct Shared {
    pub facts: OnceLock<ModelFacts>,
    pub last_timings: Mutex<Option<Timings>>,
}

/// Start the worker thread; it ends when every sender is dropped.
pub(super) fn spawn(settings: Settings, shared: Arc<Shared>) -> std::io::Result<mpsc::Sender<Request>> {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name(format!("vidgate-llama-{}", settings.provider))
        .stack_size(8 << 20)
        .spawn(move || serve(&settings, &shared, rx))?;
    Ok(tx)
}

fn serve(settings: &Settings, shared: &Shared, rx: mpsc::Receiver<Request>) {
    let fail = |message: String| ProviderError::new(settings.provider.clone(), ErrorClass::FallBack, message);
    let backend = match runtime::backend() {
        Ok(backend) => backend,
        Err(e) => return refuse_all(rx, fail(e)),
    };
    let model = match load_model(backend, settings) {
        Ok(model) => model,
        Err(e) => return refuse_all(rx, fail(e)),
    };
    let mtmd = match &settings.mmproj_path {
        Some(path) => match load_projector(path, &model, settings) {
            Ok(mtmd) => Some(mtmd),
            Err(e) => return refuse_all(rx, fail(e)),
        },
        None => None,
    };
    let n_ctx = settings.context_tokens.unwrap_or_else(|| DEFAULT_CONTEXT.min(model.n_ctx_train().max(1))).max(1);
    let n_batch = n_ctx.min(2048);
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(n_ctx))
        .with_n_batch(n_batch)
        .with_n_ubatch(n_ctx.min(512))
        .with_n_threads(settings.threads as i32)
        .with_n_threads_batch(settings.threads as i32)
        // llama.cpp's decode counters, read to tell a frame's encoding apart
        // from its decoding (see Timings::encode_ms); a clock read per decode.
        .with_no_perf(false);
    let (ctx, lines) = with_captured_errors(|| model.new_context(backend, params));
    let mut ctx = match ctx {
        Ok(ctx) => ctx,
        Err(e) => {
            let why = reason(&lines).unwrap_or_else(|| e.to_string());
            let model = settings.model_path.display();
            return refuse_all(rx, fail(format!("cannot make a context of {n_ctx} tokens for {model}: {why}")));
        }
    };
    warm_up(&model, &mut ctx);
    let image_tokens = mtmd.as_ref().and_then(probe_image_tokens);
    let _ = shared.facts.set(ModelFacts { n_ctx, image_tokens, n_embd: model.n_embd().max(0) as u32 });
    let mut engine = Engine {
        model_name: settings.model_name.clone(),
        model: &model,
        mtmd,
        ctx,
        n_ctx,
        n_batch,
        wrap: chat_wrap(&model),
        sampling: settings.sampling,
        json_grammar: settings.json_grammar,
    };
    tracing::debug!(
        provider = %settings.provider, n_ctx, threads = settings.threads, ?image_tokens, sampling = ?settings.sampling,
        json_grammar = settings.json_grammar, "local model loaded"
    );
    for request in rx {
        match request {
            Request::Load { reply } => {
                let _ = reply.send(Ok(()));
            }
            Request::Run { job, reply } => {
                if reply.is_closed() {
                    continue; // dropped while queued
                }
                let mut timings = Timings::default();
                let result = engine.run(&job, &|| reply.is_closed(), &mut timings);
                timings.cancelled = matches!(result, Err(Stop::Cancelled));
                *shared.last_timings.lock().unwrap_or_else(|e| e.into_inner()) = Some(timings);
                match result {
                    Ok(answers) => drop(reply.send(Ok(answers))),
                    Err(Stop::Failed(message)) => drop(reply.send(Err(fail(message)))),
                    Err(Stop::Cancelled) => tracing::debug!(provider = %settings.provider, "job cancelled"),
                }
            }
        }
    }
}

/// Answer every request with the same load error until the channel closes.
fn refuse_all(rx: mpsc::Receiver<Request>, error: ProviderError) {
    tracing::warn!(%error, "the local model cannot be loaded");
    for request in rx {
        match request {
            Request::Load { reply } => drop(reply.send(Err(error.clone()))),
            Request::Run { reply, .. } => drop(reply.send(Err(error.clone()))),
        }
    }
}

fn load_model(backend: &LlamaBackend, settings: &Settings) -> Result<LlamaModel, String> {
    let path = &settings.model_path;
    // Checked when the provider was built, and again here: the file may have
    // changed since, and llama.cpp must never see a file that is not GGUF.
    runtime::check_gguf(path).map_err(|p| format!("model {} {p}", path.display()))?;
    let params = LlamaModelParams::default().with_n_gpu_layers(settings.gpu_layers);
    let (model, lines) = with_captured_errors(|| LlamaModel::load_from_file(backend, path, &params));
    model.map_err(|e| {
        let why = reason(&lines).unwrap_or_else(|| e.to_string());
        format!("llama.cpp cannot load the model {}: {why}", path.display())
    })
}

fn load_projector(path: &Path, model: &LlamaModel, settings: &Settings) -> Result<MtmdContext, String> {
    runtime::check_gguf(path).map_err(|p| format!("vision projector {} {p}", path.display()))?;
    let name = path.to_str().ok_or_else(|| format!("the vision projector path {} is not UTF-8", path.display()))?;
    let params = MtmdContextParams {
        use_gpu: settings.gpu_layers > 0,
        print_timings: false,
        n_threads: settings.threads as i32,
        ..MtmdContextParams::default()
    };
    let (mtmd, lines) = with_captured_errors(|| MtmdContext::init_from_file(name, model, &params));
    let mtmd = mtmd.map_err(|e| {
        let why = reason(&lines).unwrap_or_else(|| e.to_string());
        format!(
            "the vision projector {} does not load with the model {} (n_embd {}): {why}",
            path.display(),
            settings.model_path.display(),
            model.n_embd()
        )
    })?;
    if !mtmd.support_vision() {
        return Err(format!("{} is a projector without vision (audio only?)", path.display()));
    }
    Ok(mtmd)
}

/// Decode one token and forget it, as llama.cpp's own tools do, so the first
/// job does not pay for paging in the weights and sizing the buffers.
fn warm_up(model: &LlamaModel, ctx: &mut LlamaContext<'_>) {
    let vocab = model.vocab();
    let token = if vocab.should_add_bos() { vocab.bos() } else { LlamaToken(0) };
    let mut batch = LlamaBatch::new(1, 1);
    if batch.add(token, 0, &[0], true).is_ok() && ctx.decode(&mut batch).is_err() {
        tracing::debug!("the warm-up decode failed");
    }
    ctx.clear_kv_cache();
}

/// Tokens of one 512x512 image (the default frame width), for estimates.
fn probe_image_tokens(mtmd: &MtmdContext) -> Option<u32> {
    let bitmap = MtmdBitmap::from_image_data(512, 512, &vec![128u8; 512 * 512 * 3]).ok()?;
    let text = MtmdInputText { text: mtmd_default_marker().to_string(), add_special: false, parse_special: true };
    let chunks = mtmd.tokenize(text, &[&bitmap]).ok()?;
    u32::try_from(chunks.total_tokens()).ok()
}

/// The model's chat template around the user's turn; plain text when it has
/// none or llama.cpp does not know it.
fn chat_wrap(model: &LlamaModel) -> ChatWrap {
    let rendered = model.chat_template(None).ok().and_then(|template| {
        let message = LlamaChatMessage::new("user".into(), CONTENT_SENTINEL.into()).ok()?;
        model.apply_chat_template(&template, &[message], true).ok()
    });
    rendered.as_deref().and_then(ChatWrap::from_rendered).unwrap_or_else(ChatWrap::plain)
}
