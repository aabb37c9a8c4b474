//! The inference engine: one thread owns the model and its context and runs
//! one generation at a time with all the threads it was given, so a burst
//! of requests queues instead of thrashing the cores. The queue is bounded
//! (past it, [`Busy`]); a request whose client has gone is skipped, and a
//! generation whose client hangs up stops at its next token.

use std::num::NonZeroU32;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use tokio::sync::mpsc;

use crate::metrics::{Metrics, Outcome};
use crate::model_file::ModelFile;
use crate::options::GenerationOptions;
use crate::prompt::{self, Cut, Message};
use crate::queue::WaitQueue;
use crate::text::{StopScanner, Utf8Pieces};

/// Tokens decoded in one batch while reading a prompt.
const BATCH: usize = 512;

/// The smallest context a request may ask for.
const MIN_CONTEXT: u32 = 64;

/// How the engine runs.
#[derive(Debug, Clone, Copy)]
pub struct EngineSettings {
    /// CPU threads generating tokens.
    pub threads: usize,
    /// CPU threads reading a prompt (a short burst: all cores by default,
    /// for the first token's sake).
    pub threads_batch: usize,
    /// The context window when a request gives no `num_ctx`.
    pub num_ctx: u32,
    /// Requests that may wait for the model; past it, [`Busy`].
    pub max_queue: usize,
}

/// What is known of the loaded model.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    /// The name it is served under, `name:tag`.
    pub name: String,
    /// The file.
    pub file: ModelFile,
    /// `general.architecture`: `llama`, ...
    pub architecture: String,
    /// Parameter count.
    pub parameters: u64,
    /// As Ollama writes it: `134.52M`.
    pub parameter_size: String,
    /// `Q4_1`, ...
    pub quantization: String,
    /// The context the model was trained with.
    pub context_train: u32,
    /// The context a request without `num_ctx` gets.
    pub context_default: u32,
    /// The chat template from the file's metadata.
    pub template: String,
    /// Bytes of memory the weights take.
    pub size_in_memory: u64,
}

/// What a generation reads.
#[derive(Debug, Clone)]
pub enum Prompt {
    /// A conversation, formatted with the model's chat template.
    Chat(Vec<Message>),
    /// Text given to the model as is (`raw` generate).
    Raw(String),
}

/// Why a generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DoneReason {
    /// The model ended its answer, or a stop sequence did.
    Stop,
    /// `num_predict` or the context window cut it.
    Length,
}

impl DoneReason {
    /// Ollama's `done_reason`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::Length => "length",
        }
    }
}

/// A finished generation's figures.
#[derive(Debug, Clone)]
pub struct Finished {
    /// Why it ended.
    pub reason: DoneReason,
    /// Waiting for the model (it is always loaded: this is the queue).
    pub waited: Duration,
    /// Prompt tokens read.
    pub prompt_tokens: u64,
    /// Reading them.
    pub prompt_duration: Duration,
    /// Tokens generated.
    pub generated: u64,
    /// Generating them.
    pub generation_duration: Duration,
    /// The prompt's and the answer's token ids (generate's `context`).
    pub context: Vec<u64>,
}

/// What a generation sends, in order: text, then one `Done` or `Failed`.
#[derive(Debug)]
pub enum Event {
    /// More of the answer.
    Text(String),
    /// The end.
    Done(Box<Finished>),
    /// The engine could not finish.
    Failed(String),
}

/// The queue is full.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("server busy, please try again.  maximum pending requests exceeded")]
pub struct Busy;

/// Why the engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// llama.cpp refused the backend.
    #[error("could not start llama.cpp: {0}")]
    Backend(String),
    /// llama.cpp could not load the file.
    #[error("could not load the model {path}: {reason}")]
    Load {
        /// The file.
        path: String,
        /// llama.cpp's error.
        reason: String,
    },
    /// The engine thread could not be started or died while loading.
    #[error("the inference thread failed: {0}")]
    Thread(String),
}

struct Job {
    prompt: Prompt,
    options: GenerationOptions,
    client: Client,
}

/// Who waits for a generation.
struct Client {
    arrived: Instant,
    events: mpsc::UnboundedSender<Event>,
}

/// A handle to the engine thread; cheap to clone.
#[derive(Clone)]
pub struct Engine {
    queue: Arc<WaitQueue<Job>>,
    metrics: Metrics,
    alive: Arc<AtomicBool>,
    info: Arc<ModelInfo>,
}

impl Engine {
    /// Loads the model on a new thread and starts serving generations.
    /// `waiting` is the queue depth the metrics read.
    pub fn start(
        name: String,
        file: ModelFile,
        settings: EngineSettings,
        metrics: Metrics,
        waiting: Arc<AtomicUsize>,
    ) -> Result<Self, EngineError> {
        let queue = Arc::new(WaitQueue::new(settings.max_queue, waiting));
        let (loaded_tx, loaded_rx) = std::sync::mpsc::channel();
        let alive = Arc::new(AtomicBool::new(true));
        let worker = Worker {
            settings,
            metrics: metrics.clone(),
            alive: alive.clone(),
        };
        let jobs = queue.clone();
        std::thread::Builder::new()
            .name("local-llm-engine".into())
            .spawn(move || worker.run(name, file, &jobs, loaded_tx))
            .map_err(|e| EngineError::Thread(e.to_string()))?;
        let info = loaded_rx
            .recv()
            .map_err(|_| EngineError::Thread("it stopped while loading the model".into()))??;
        Ok(Self {
            queue,
            metrics,
            alive,
            info: Arc::new(info),
        })
    }

    /// The loaded model.
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// Whether the engine thread still runs.
    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Relaxed)
    }

    /// Queues a generation; its events arrive on the returned receiver.
    /// Dropping the receiver cancels it.
    pub fn submit(
        &self,
        prompt: Prompt,
        options: GenerationOptions,
        arrived: Instant,
    ) -> Result<mpsc::UnboundedReceiver<Event>, Busy> {
        let (events, receiver) = mpsc::unbounded_channel();
        let job = Job {
            prompt,
            options,
            client: Client { arrived, events },
        };
        if !self.is_alive() {
            let _ = job
                .client
                .events
                .send(Event::Failed("the model runner has stopped".into()));
            return Ok(receiver);
        }
        let dropped = self
            .queue
            .push(job, |waiting| waiting.client.events.is_closed())
            .map_err(|_| Busy)?;
        for _ in 0..dropped {
            self.metrics.ended(Outcome::Abandoned);
        }
        Ok(receiver)
    }
}

/// The engine thread's state.
struct Worker {
    settings: EngineSettings,
    metrics: Metrics,
    alive: Arc<AtomicBool>,
}

impl Worker {
    fn run(
        self,
        name: String,
        file: ModelFile,
        queue: &WaitQueue<Job>,
        loaded: std::sync::mpsc::Sender<Result<ModelInfo, EngineError>>,
    ) {
        let loading = load(&name, &file, &self.settings);
        let (backend, model, template, info) = match loading {
            Ok(parts) => parts,
            Err(error) => {
                self.alive.store(false, Ordering::Relaxed);
                let _ = loaded.send(Err(error));
                return;
            }
        };
        let (default_ctx, context_train) = (info.context_default, info.context_train);
        let _ = loaded.send(Ok(info));
        let mut session = Session {
            backend: &backend,
            model: &model,
            template: &template,
            threads: i32::try_from(self.settings.threads.max(1)).unwrap_or(1),
            threads_batch: i32::try_from(self.settings.threads_batch.max(1)).unwrap_or(1),
            default_ctx,
            context_train,
            context: None,
        };
        loop {
            let job = queue.pop();
            let outcome = self.serve(&mut session, job);
            self.metrics.ended(outcome);
        }
    }

    /// Runs one job to its end; a panic in llama.cpp's bindings fails the
    /// job, not the engine.
    fn serve(&self, session: &mut Session<'_>, job: Job) -> Outcome {
        if job.client.events.is_closed() {
            return Outcome::Abandoned;
        }
        let events = job.client.events.clone();
        let result = catch_unwind(AssertUnwindSafe(|| session.generate(job, &self.metrics)));
        match result {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(reason)) => {
                tracing::error!(%reason, "generation failed");
                let _ = events.send(Event::Failed(reason));
                Outcome::Failed
            }
            Err(_) => {
                tracing::error!("generation panicked; the context is rebuilt");
                session.context = None;
                let _ = events.send(Event::Failed("the model runner failed".into()));
                Outcome::Failed
            }
        }
    }
}

type Loaded = (LlamaBackend, LlamaModel, LlamaChatTemplate, ModelInfo);

fn load(name: &str, file: &ModelFile, settings: &EngineSettings) -> Result<Loaded, EngineError> {
    let mut backend = LlamaBackend::init().map_err(|e| EngineError::Backend(e.to_string()))?;
    backend.void_logs();
    let model = LlamaModel::load_from_file(&backend, &file.path, &LlamaModelParams::default())
        .map_err(|e| EngineError::Load {
            path: file.path.display().to_string(),
            reason: e.to_string(),
        })?;
    // A model without a template of its own gets ChatML, which llama.cpp
    // knows by name.
    let template = model
        .chat_template(None)
        .or_else(|_| LlamaChatTemplate::new("chatml"))
        .map_err(|e| EngineError::Load {
            path: file.path.display().to_string(),
            reason: format!("unusable chat template: {e}"),
        })?;
    let context_train = model.n_ctx_train().max(MIN_CONTEXT);
    let info = ModelInfo {
        name: name.to_owned(),
        file: file.clone(),
        architecture: model
            .meta_val_str("general.architecture")
            .unwrap_or_else(|_| "llama".into()),
        parameters: model.n_params(),
        parameter_size: parameter_size(model.n_params()),
        quantization: quantization(model.meta_val_str("general.file_type").ok().as_deref()),
        context_train,
        context_default: settings.num_ctx.clamp(MIN_CONTEXT, context_train),
        template: template.to_string().unwrap_or_default(),
        size_in_memory: model.size(),
    };
    Ok((backend, model, template, info))
}

/// Ollama's way of writing a parameter count: `134.52M`, `1.2B`.
fn parameter_size(parameters: u64) -> String {
    let n = parameters as f64;
    if n >= 1e9 {
        format!("{:.1}B", n / 1e9)
    } else {
        format!("{:.2}M", n / 1e6)
    }
}

/// The name of a GGUF `general.file_type`.
fn quantization(file_type: Option<&str>) -> String {
    let name = match file_type.and_then(|t| t.parse::<u32>().ok()) {
        Some(0) => "F32",
        Some(1) => "F16",
        Some(2) => "Q4_0",
        Some(3) => "Q4_1",
        Some(7) => "Q8_0",
        Some(8) => "Q5_0",
        Some(9) => "Q5_1",
        Some(10) => "Q2_K",
        Some(12) => "Q3_K_M",
        Some(14) => "Q4_K_S",
        Some(15) => "Q4_K_M",
        Some(16) => "Q5_K_S",
        Some(17) => "Q5_K_M",
        Some(18) => "Q6_K",
        Some(32) => "BF16",
        _ => "unknown",
    };
    name.to_owned()
}

/// The model and the context generations run in.
struct Session<'m> {
    backend: &'m LlamaBackend,
    model: &'m LlamaModel,
    template: &'m LlamaChatTemplate,
    threads: i32,
    threads_batch: i32,
    /// The context a request without `num_ctx` gets.
    default_ctx: u32,
    /// The largest context a request may ask for.
    context_train: u32,
    /// The context and its size, rebuilt when a request asks for another.
    context: Option<(u32, LlamaContext<'m>)>,
}

impl<'m> Session<'m> {
    /// A context of `n_ctx` tokens, emptied.
    fn context(&mut self, n_ctx: u32) -> Result<&mut LlamaContext<'m>, String> {
        if self.context.as_ref().is_none_or(|(size, _)| *size != n_ctx) {
            self.context = None;
            let params = LlamaContextParams::default()
                .with_n_ctx(NonZeroU32::new(n_ctx))
                .with_n_batch(BATCH as u32)
                .with_n_ubatch(BATCH as u32)
                .with_n_threads(self.threads)
                .with_n_threads_batch(self.threads_batch);
            let context = self
                .model
                .new_context(self.backend, params)
                .map_err(|e| format!("could not make a context of {n_ctx} tokens: {e}"))?;
            self.context = Some((n_ctx, context));
        }
        let (_, context) = self
            .context
            .as_mut()
            .ok_or_else(|| "no context".to_owned())?;
        context.clear_kv_cache();
        Ok(context)
    }

    /// The prompt's tokens, cut to leave `reserve` tokens for the answer.
    fn tokens(
        &self,
        prompt: Prompt,
        n_ctx: u32,
        reserve: usize,
    ) -> Result<(Vec<LlamaToken>, Cut), String> {
        let budget = (n_ctx as usize).saturating_sub(reserve).max(1);
        let vocab = self.model.vocab();
        let tokenize = |text: &str| vocab.tokenize(text.as_bytes(), false, true);
        let (text, mut cut) = match prompt {
            Prompt::Raw(text) => (text, Cut::default()),
            Prompt::Chat(mut messages) => {
                let cut = prompt::fit(&mut messages, budget, |m| {
                    self.render(m).map_or(usize::MAX, |t| tokenize(&t).len())
                });
                (self.render(&messages)?, cut)
            }
        };
        let mut tokens = tokenize(&text);
        // Whatever is still too long (a raw prompt, a template longer than
        // the window) keeps its end.
        if tokens.len() > budget {
            cut.truncated_chars += tokens.len() - budget;
            tokens.drain(..tokens.len() - budget);
        }
        if tokens.is_empty() {
            tokens.push(vocab.bos());
        }
        Ok((tokens, cut))
    }

    /// The conversation in the model's chat template, ready for the answer.
    fn render(&self, messages: &[Message]) -> Result<String, String> {
        let chat = messages
            .iter()
            .map(|m| LlamaChatMessage::new(m.role.clone(), m.content.clone()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("a message cannot be given to the model: {e}"))?;
        self.model
            .apply_chat_template(self.template, &chat, true)
            .map_err(|e| format!("the chat template failed: {e}"))
    }

    fn generate(&mut self, job: Job, metrics: &Metrics) -> Result<Outcome, String> {
        let started = Instant::now();
        let Job {
            prompt,
            options,
            client,
        } = job;
        let n_ctx = options
            .num_ctx
            .unwrap_or(self.default_ctx)
            .clamp(MIN_CONTEXT, self.context_train);
        let half = n_ctx as usize / 2;
        let reserve = options
            .token_limit()
            .map_or(n_ctx as usize / 4, |n| n.min(half));
        let (prompt_tokens, cut) = self.tokens(prompt, n_ctx, reserve)?;
        if cut.any() {
            tracing::info!(
                dropped_messages = cut.dropped_messages,
                truncated = cut.truncated_chars,
                n_ctx,
                "the prompt was cut to fit the context"
            );
        }
        let model = self.model;
        let mut sampler = sampler(model, &options);
        let context = self.context(n_ctx)?;
        let mut batch = LlamaBatch::new(BATCH, 1);
        read_prompt(context, &mut batch, &prompt_tokens)?;
        let prompt_done = Instant::now();

        let generated = match generate_tokens(
            context,
            &mut batch,
            &mut sampler,
            model,
            &client,
            &options,
            prompt_tokens.len(),
            n_ctx,
            metrics,
        )? {
            Some(generated) => generated,
            None => return Ok(Outcome::Abandoned),
        };
        let Generated {
            reason,
            answer,
            first_token_at,
        } = generated;
        let end = Instant::now();
        let generating = end.duration_since(first_token_at.unwrap_or(end));
        metrics.generation(prompt_tokens.len() as u64, answer.len() as u64, generating);
        let finished = Finished {
            reason,
            waited: started.duration_since(client.arrived),
            prompt_tokens: prompt_tokens.len() as u64,
            prompt_duration: prompt_done.duration_since(started),
            generated: answer.len() as u64,
            generation_duration: end.duration_since(prompt_done),
            context: prompt_tokens
                .iter()
                .chain(&answer)
                .map(|t| u64::try_from(t.0).unwrap_or_default())
                .collect(),
        };
        let _ = client.events.send(Event::Done(Box::new(finished)));
        Ok(match reason {
            DoneReason::Stop => Outcome::Stop,
            DoneReason::Length => Outcome::Length,
        })
    }
}

/// The answer's tokens and how they ended.
struct Generated {
    reason: DoneReason,
    answer: Vec<LlamaToken>,
    first_token_at: Option<Instant>,
}

/// The token loop: draws tokens until the model, a stop sequence,
/// `num_predict` or the context ends the answer, sending its text as it
/// goes; `None` when the client hung up.
#[allow(clippy::too_many_arguments)]
fn generate_tokens(
    context: &mut LlamaContext<'_>,
    batch: &mut LlamaBatch<'_>,
    sampler: &mut LlamaSampler,
    model: &LlamaModel,
    client: &Client,
    options: &GenerationOptions,
    prompt_len: usize,
    n_ctx: u32,
    metrics: &Metrics,
) -> Result<Option<Generated>, String> {
    let vocab = model.vocab();
    let mut pieces = Utf8Pieces::default();
    let mut stops = StopScanner::new(&options.stop);
    let mut answer: Vec<LlamaToken> = Vec::new();
    let mut first_token_at = None;
    let limit = options.token_limit();
    loop {
        if client.events.is_closed() {
            metrics.generation(prompt_len as u64, answer.len() as u64, Duration::ZERO);
            return Ok(None);
        }
        let pos = prompt_len + answer.len();
        if limit.is_some_and(|n| answer.len() >= n) || pos >= n_ctx as usize {
            break;
        }
        let token = sampler.sample(context, batch.n_tokens() - 1);
        if vocab.is_eog(token) {
            break;
        }
        if first_token_at.is_none() {
            first_token_at = Some(Instant::now());
            metrics.first_token(client.arrived.elapsed());
        }
        answer.push(token);
        let scanned = stops.push(&pieces.push(&vocab.token_to_piece(token, false, None)));
        send_text(client, scanned.text);
        if scanned.stopped {
            // Nothing after a stop sequence is sent.
            return Ok(Some(Generated {
                reason: DoneReason::Stop,
                answer,
                first_token_at,
            }));
        }
        batch.clear();
        batch
            .add(token, pos as i32, &[0], true)
            .map_err(|e| e.to_string())?;
        context
            .decode(batch)
            .map_err(|e| format!("generating failed: {e}"))?;
    }
    // The model or a limit ended it: what was held back is sent.
    let mut rest = stops.push(&pieces.finish()).text;
    rest.push_str(&stops.finish());
    send_text(client, rest);
    let cut_short =
        limit.is_some_and(|n| answer.len() >= n) || prompt_len + answer.len() >= n_ctx as usize;
    Ok(Some(Generated {
        reason: if cut_short {
            DoneReason::Length
        } else {
            DoneReason::Stop
        },
        answer,
        first_token_at,
    }))
}

fn send_text(client: &Client, text: String) {
    if !text.is_empty() {
        let _ = client.events.send(Event::Text(text));
    }
}

/// Decodes the prompt in batches; the logits of its last token are kept for
/// the first draw.
fn read_prompt(
    context: &mut LlamaContext<'_>,
    batch: &mut LlamaBatch<'_>,
    tokens: &[LlamaToken],
) -> Result<(), String> {
    let last = tokens.len().saturating_sub(1);
    for (chunk_index, chunk) in tokens.chunks(BATCH).enumerate() {
        batch.clear();
        for (i, token) in chunk.iter().enumerate() {
            let pos = chunk_index * BATCH + i;
            batch
                .add(*token, pos as i32, &[0], pos == last)
                .map_err(|e| e.to_string())?;
        }
        context
            .decode(batch)
            .map_err(|e| format!("reading the prompt failed: {e}"))?;
    }
    Ok(())
}

/// The sampler chain for `options`: penalties, then greedy at temperature 0
/// or top-k, top-p, min-p, temperature and a seeded draw.
fn sampler(model: &LlamaModel, options: &GenerationOptions) -> LlamaSampler {
    let mut chain = Vec::new();
    if options.repeat_last_n != 0
        && (options.repeat_penalty != 1.0
            || options.frequency_penalty != 0.0
            || options.presence_penalty != 0.0)
    {
        chain.push(LlamaSampler::penalties(
            model.n_vocab(),
            options.repeat_last_n.max(0),
            options.repeat_penalty,
            options.frequency_penalty,
            options.presence_penalty,
        ));
    }
    if options.temperature <= 0.0 {
        chain.push(LlamaSampler::greedy());
    } else {
        if options.top_k > 0 {
            chain.push(LlamaSampler::top_k(options.top_k));
        }
        if options.top_p < 1.0 {
            chain.push(LlamaSampler::top_p(options.top_p, 1));
        }
        if options.min_p > 0.0 {
            chain.push(LlamaSampler::min_p(options.min_p, 1));
        }
        chain.push(LlamaSampler::temp(options.temperature));
        chain.push(LlamaSampler::dist(seed(options.seed)));
    }
    LlamaSampler::chain_simple(chain)
}

/// The draw's seed: the request's, or a fresh one (Ollama's `-1`, or none).
fn seed(requested: Option<i64>) -> u32 {
    match requested {
        Some(seed) if seed >= 0 => seed as u32,
        // Each RandomState is freshly seeded by the standard library.
        _ => {
            use std::hash::{BuildHasher, Hasher};
            std::collections::hash_map::RandomState::new()
                .build_hasher()
                .finish() as u32
        }
    }
}
