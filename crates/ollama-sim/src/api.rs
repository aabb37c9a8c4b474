//! The HTTP routes: Ollama's API and the `/_sim/*` control routes.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use bytes::Bytes;
use serde_json::{Value, json};

use chatbot_common::server::resource;
use ollama_wire::{
    AssistantMessage, ChatChunk, ChatRequest, Failure, GenerateChunk, GenerateRequest,
    GenerationFields, KeepAlive, Metrics, ModelList, OLLAMA_VERSION, PsModel, ShowRequest,
    TagModel, encode, error, json_response, ndjson_line, now, read_json, timestamp, typed,
    typed_generation,
};

use crate::config::SimConfig;
use crate::models;
use crate::reply::{self, SimMessage};
use crate::state::{RequestCounts, Sim};

/// The error of `error_rate`.
pub const SIMULATED_FAILURE: &str = "simulated failure";

/// The error of `mid_stream_error_after`.
pub const SIMULATED_MID_STREAM_FAILURE: &str = "simulated failure mid-stream";

/// The context length `/api/ps` and `/api/show` report.
const CONTEXT_LENGTH: u64 = 4096;

/// Adds every route of the simulator to `cfg`.
pub fn routes(cfg: &mut web::ServiceConfig, sim: Sim) {
    cfg.app_data(web::Data::new(sim))
        .service(
            resource("/", "GET, HEAD")
                .route(web::get().to(root))
                .route(web::head().to(root)),
        )
        .service(
            resource("/api/version", "GET, HEAD")
                .route(web::get().to(version))
                .route(web::head().to(version)),
        )
        .service(
            resource("/api/tags", "GET, HEAD")
                .route(web::get().to(tags))
                .route(web::head().to(tags)),
        )
        .service(resource("/api/ps", "GET").route(web::get().to(ps)))
        .service(resource("/api/show", "POST").route(web::post().to(show)))
        .service(resource("/api/chat", "POST").route(web::post().to(chat)))
        .service(resource("/api/generate", "POST").route(web::post().to(generate)))
        .service(
            resource("/_sim/config", "GET, PUT")
                .route(web::get().to(get_config))
                .route(web::put().to(put_config)),
        )
        .service(
            resource("/_sim/stats", "GET, DELETE")
                .route(web::get().to(get_stats))
                .route(web::delete().to(reset_stats)),
        )
        .service(resource("/_sim/requests", "GET").route(web::get().to(recent_requests)));
}

/// The minimal OpenAPI document served at `/openapi.json`: the routes, not
/// Ollama's schemas (the simulator is a stand-in; Ollama's own docs define
/// the wire format).
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "ollama-sim",
        description = "A deterministic stand-in for the Ollama HTTP API. See the ollama-sim crate \
            documentation for the reply rule and the fault settings."
    ),
    paths(
        root,
        version,
        tags,
        ps,
        show,
        chat,
        generate,
        get_config,
        put_config,
        get_stats,
        reset_stats,
        recent_requests
    )
)]
pub struct SimApi;

// ---------------------------------------------------------------- wire types

// ------------------------------------------------------------------ helpers

fn count(sim: &Sim, pick: impl FnOnce(&mut RequestCounts) -> &mut u64) {
    sim.with_stats(|s| *pick(&mut s.requests) += 1);
}

/// The configured model a generation request names, or Ollama's error.
fn resolve_model(config: &SimConfig, requested: &str) -> Result<String, Failure> {
    if requested.trim().is_empty() {
        return Err(Failure::bad_request("model is required"));
    }
    ollama_wire::find(&config.models, requested)
        .cloned()
        .ok_or_else(|| Failure::model_not_found(requested))
}

fn num_predict(options: Option<&Value>) -> Option<usize> {
    let value = options?.get("num_predict")?;
    let n = value
        .as_i64()
        .or_else(|| value.as_f64().map(|f| f as i64))?;
    usize::try_from(n).ok().filter(|n| *n > 0)
}

// ----------------------------------------------------------- simple routes

/// Liveness text `Ollama is running`.
#[utoipa::path(get, path = "/", responses((status = 200, description = "OK")))]
async fn root(sim: web::Data<Sim>) -> HttpResponse {
    count(&sim, |r| &mut r.root);
    HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body("Ollama is running")
}

/// Ollama version.
#[utoipa::path(get, path = "/api/version", responses((status = 200, description = "OK")))]
async fn version(sim: web::Data<Sim>) -> HttpResponse {
    count(&sim, |r| &mut r.version);
    HttpResponse::Ok().json(json!({"version": OLLAMA_VERSION}))
}

/// Configured models.
#[utoipa::path(get, path = "/api/tags", responses((status = 200, description = "OK")))]
async fn tags(sim: web::Data<Sim>) -> HttpResponse {
    count(&sim, |r| &mut r.tags);
    let modified_at = timestamp(models::modified_at());
    let list: Vec<TagModel> = sim
        .config()
        .models
        .iter()
        .map(|name| {
            let info = models::info(name);
            TagModel {
                name: info.name.clone(),
                model: info.name,
                modified_at: modified_at.clone(),
                size: info.size,
                digest: info.digest,
                details: info.details,
            }
        })
        .collect();
    HttpResponse::Ok().json(ModelList { models: list })
}

/// Models used recently (loaded).
#[utoipa::path(get, path = "/api/ps", responses((status = 200, description = "OK")))]
async fn ps(sim: web::Data<Sim>) -> HttpResponse {
    count(&sim, |r| &mut r.ps);
    let list: Vec<PsModel> = sim
        .loaded()
        .into_iter()
        .map(|loaded| {
            let info = models::info(&loaded.name);
            PsModel {
                name: info.name.clone(),
                model: info.name,
                size: info.size,
                digest: info.digest,
                details: info.details,
                expires_at: timestamp(loaded.expires_at),
                size_vram: 0,
                context_length: CONTEXT_LENGTH,
            }
        })
        .collect();
    HttpResponse::Ok().json(ModelList { models: list })
}

/// Model details.
#[utoipa::path(post, path = "/api/show", responses((status = 200, description = "OK")))]
async fn show(sim: web::Data<Sim>, payload: web::Payload) -> HttpResponse {
    count(&sim, |r| &mut r.show);
    let req: ShowRequest = match read_json(payload).await.and_then(typed) {
        Ok(req) => req,
        Err(failure) => return failure.response(),
    };
    let name = match resolve_model(&sim.config(), req.requested()) {
        Ok(name) => name,
        Err(failure) => return failure.response(),
    };
    let info = models::info(&name);
    let family = info.details.family.clone();
    let mut model_info = serde_json::Map::new();
    model_info.insert("general.architecture".into(), json!(family));
    model_info.insert(format!("{family}.context_length"), json!(CONTEXT_LENGTH));
    HttpResponse::Ok().json(json!({
        "license": "",
        "modelfile": format!("# Modelfile generated by ollama-sim\nFROM {name}\n"),
        "parameters": "",
        "template": "{{ .Prompt }}",
        "details": info.details,
        "model_info": model_info,
        "capabilities": ["completion"],
        "modified_at": timestamp(models::modified_at()),
    }))
}

// ------------------------------------------------------------ control routes

/// Current simulator settings.
#[utoipa::path(get, path = "/_sim/config", responses((status = 200, description = "OK")))]
async fn get_config(sim: web::Data<Sim>) -> HttpResponse {
    HttpResponse::Ok().json(sim.config())
}

/// Merge settings into the current ones.
#[utoipa::path(put, path = "/_sim/config", responses((status = 200, description = "OK")))]
async fn put_config(sim: web::Data<Sim>, payload: web::Payload) -> HttpResponse {
    let patch = match read_json(payload).await {
        Ok(patch) => patch,
        Err(failure) => return failure.response(),
    };
    let merged = match sim.config().merged(&patch) {
        Ok(merged) => merged,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    match sim.set_config(merged.clone()) {
        Ok(()) => {
            tracing::info!(config = ?merged, "simulator settings changed");
            HttpResponse::Ok().json(merged)
        }
        Err(message) => error(StatusCode::BAD_REQUEST, message),
    }
}

/// Request and generation counters.
#[utoipa::path(get, path = "/_sim/stats", responses((status = 200, description = "OK")))]
async fn get_stats(sim: web::Data<Sim>) -> HttpResponse {
    HttpResponse::Ok().json(sim.stats())
}

/// Reset the counters.
#[utoipa::path(delete, path = "/_sim/stats", responses((status = 200, description = "OK")))]
async fn reset_stats(sim: web::Data<Sim>) -> HttpResponse {
    sim.reset_stats();
    HttpResponse::Ok().json(sim.stats())
}

/// The last chat and generate request bodies.
#[utoipa::path(get, path = "/_sim/requests", responses((status = 200, description = "OK")))]
async fn recent_requests(sim: web::Data<Sim>) -> HttpResponse {
    HttpResponse::Ok().json(json!({"requests": sim.recent_requests()}))
}

// -------------------------------------------------------------- generation

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Chat,
    Generate,
}

/// One accepted generation, whose tokens are about to be sent.
struct Generation {
    sim: Sim,
    kind: Kind,
    /// The model name as the request spelled it (Ollama echoes it).
    model: String,
    tokens: Vec<String>,
    done_reason: &'static str,
    context: Option<Vec<u64>>,
    prompt_eval_count: u64,
    load_ns: u64,
    started: Instant,
    first_token_at: Instant,
    interval: Option<Duration>,
    error_after: Option<usize>,
    /// Tokens sent so far.
    sent: usize,
}

impl Generation {
    fn metrics(&self) -> Metrics {
        let end = Instant::now();
        let eval_count = self.sent as u64;
        let prompt_real = duration_ns(self.first_token_at.duration_since(self.started));
        let eval_real = duration_ns(end.duration_since(self.first_token_at));
        let prompt_eval_duration = prompt_real.max(self.prompt_eval_count * 250_000);
        let eval_duration = eval_real.max(eval_count * 1_000_000).max(1);
        Metrics {
            total_duration: self.load_ns + prompt_eval_duration + eval_duration,
            load_duration: self.load_ns,
            prompt_eval_count: self.prompt_eval_count,
            prompt_eval_duration,
            eval_count,
            eval_duration,
        }
    }

    /// One object, in Ollama's field order: a token chunk, or with `done`
    /// the final object.
    fn object(&self, content: &str, done: Option<Metrics>) -> Vec<u8> {
        let done_reason = done.map(|_| self.done_reason);
        match self.kind {
            Kind::Chat => encode(&ChatChunk {
                model: &self.model,
                created_at: now(),
                message: AssistantMessage::new(content),
                done_reason,
                done: done.is_some(),
                metrics: done,
            }),
            Kind::Generate => encode(&GenerateChunk {
                model: &self.model,
                created_at: now(),
                response: content,
                done: done.is_some(),
                done_reason,
                context: done.and(self.context.as_deref()),
                metrics: done,
            }),
        }
    }

    /// Whether the injected mid-stream error is due now.
    fn error_due(&self) -> bool {
        self.error_after
            .is_some_and(|n| self.sent >= n.min(self.tokens.len()))
    }

    /// The next NDJSON line, or `None` when the stream is over.
    async fn next_line(mut self) -> Option<(Result<Bytes, Infallible>, Option<Self>)> {
        if self.error_due() {
            self.sim.with_stats(|s| s.mid_stream_errors += 1);
            let line = ndjson_line(encode(&json!({"error": SIMULATED_MID_STREAM_FAILURE})));
            return Some((Ok(line), None));
        }
        if let Some(token) = self.tokens.get(self.sent).cloned() {
            if self.sent > 0
                && let Some(interval) = self.interval
            {
                tokio::time::sleep(interval).await;
            }
            self.sent += 1;
            self.sim.with_stats(|s| s.tokens_emitted += 1);
            let line = ndjson_line(self.object(&token, None));
            return Some((Ok(line), Some(self)));
        }
        let metrics = self.metrics();
        self.sim.with_stats(|s| s.generations_completed += 1);
        let line = ndjson_line(self.object("", Some(metrics)));
        Some((Ok(line), None))
    }

    fn stream(self) -> HttpResponse {
        let body = futures::stream::unfold(Some(self), |state| async move {
            match state {
                Some(generation) => generation.next_line().await,
                None => None,
            }
        });
        HttpResponse::Ok()
            .content_type("application/x-ndjson")
            .streaming(body)
    }

    async fn whole(mut self) -> HttpResponse {
        let goal = match self.error_after {
            Some(n) => n.min(self.tokens.len()),
            None => self.tokens.len(),
        };
        if let Some(interval) = self.interval
            && goal > 1
        {
            let steps = u32::try_from(goal - 1).unwrap_or(u32::MAX);
            tokio::time::sleep(interval.saturating_mul(steps)).await;
        }
        self.sent = goal;
        self.sim.with_stats(|s| s.tokens_emitted += goal as u64);
        if self.error_after.is_some() {
            self.sim.with_stats(|s| s.mid_stream_errors += 1);
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                SIMULATED_MID_STREAM_FAILURE,
            );
        }
        let content = self.tokens.concat();
        let metrics = self.metrics();
        self.sim.with_stats(|s| s.generations_completed += 1);
        json_response(self.object(&content, Some(metrics)))
    }
}

fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// What a validated request asks for.
struct Accepted {
    kind: Kind,
    /// The model as requested.
    requested: String,
    /// The configured model it resolved to.
    model: String,
    messages: Vec<SimMessage>,
    stream: bool,
    num_predict: Option<usize>,
    json_format: bool,
    keep_alive: KeepAlive,
    context_prompt: Option<String>,
}

/// The answer to a request with nothing to generate: load or unload the model.
fn load_or_unload(sim: &Sim, accepted: &Accepted) -> HttpResponse {
    let done_reason = if accepted.keep_alive == KeepAlive::Unload {
        sim.unload(&accepted.model);
        "unload"
    } else {
        sim.touch_model(&accepted.model, accepted.keep_alive);
        "load"
    };
    let body = match accepted.kind {
        Kind::Chat => encode(&ChatChunk {
            model: &accepted.requested,
            created_at: now(),
            message: AssistantMessage::new(""),
            done_reason: Some(done_reason),
            done: true,
            metrics: None,
        }),
        Kind::Generate => encode(&GenerateChunk {
            model: &accepted.requested,
            created_at: now(),
            response: "",
            done: true,
            done_reason: Some(done_reason),
            context: None,
            metrics: None,
        }),
    };
    json_response(body)
}

/// Applies the faults, then answers with a stream or one object.
async fn run(sim: &Sim, accepted: Accepted, started: Instant) -> HttpResponse {
    if accepted.messages.is_empty() {
        return load_or_unload(sim, &accepted);
    }
    let config = sim.config();
    if config.hang {
        // Never answered: the connection stays open until the client gives
        // up (or the simulator stops). Turning `hang` off later does not
        // release it, so an abandoned request never turns into a generation.
        sim.with_stats(|s| s.hung_requests += 1);
        tracing::debug!("holding a request for ever: hang is set");
        futures::future::pending::<()>().await;
    }
    if config.error_rate > 0.0 && sim.next_request_fails(config.error_rate) {
        return error(StatusCode::INTERNAL_SERVER_ERROR, SIMULATED_FAILURE);
    }

    let mut text = reply::chat_reply(&accepted.model, &accepted.messages, config.reply_tokens);
    if accepted.json_format {
        text = json!({ "reply": text }).to_string();
    }
    let mut tokens = reply::tokens(&text);
    let mut done_reason = "stop";
    if let Some(limit) = accepted.num_predict
        && limit < tokens.len()
    {
        tokens.truncate(limit);
        done_reason = "length";
    }
    let context = (accepted.kind == Kind::Generate).then(|| {
        reply::context_ids(
            accepted.context_prompt.as_deref().unwrap_or_default(),
            &tokens.concat(),
        )
    });
    let load_ns = sim.touch_model(&accepted.model, accepted.keep_alive);
    sim.with_stats(|s| {
        s.generations_started += 1;
        *s.generations_by_model
            .entry(accepted.model.clone())
            .or_default() += 1;
    });

    tokio::time::sleep(config.first_token_delay()).await;
    let generation = Generation {
        sim: sim.clone(),
        kind: accepted.kind,
        model: accepted.requested,
        tokens,
        done_reason,
        context,
        prompt_eval_count: reply::prompt_eval_count(&accepted.messages),
        load_ns,
        started,
        first_token_at: Instant::now(),
        interval: config.token_interval(),
        error_after: config.mid_stream_error_after,
        sent: 0,
    };
    if accepted.stream {
        generation.stream()
    } else {
        generation.whole().await
    }
}

impl Accepted {
    /// A request for `messages` with the common fields checked.
    fn new(
        sim: &Sim,
        kind: Kind,
        fields: GenerationFields,
        messages: Vec<SimMessage>,
        context_prompt: Option<String>,
    ) -> Result<Self, Failure> {
        let model = resolve_model(&sim.config(), &fields.model)?;
        Ok(Self {
            kind,
            model,
            messages,
            stream: fields.streamed(),
            num_predict: num_predict(fields.options.as_ref()),
            json_format: fields.wants_format(),
            keep_alive: fields.keep_alive()?,
            context_prompt,
            requested: fields.model,
        })
    }
}

fn accept_chat(sim: &Sim, body: Value) -> Result<Accepted, Failure> {
    let req: ChatRequest = typed_generation(body)?;
    // The model is checked before the messages, as Ollama does.
    resolve_model(&sim.config(), &req.fields.model)?;
    let mut messages = Vec::new();
    for m in req.messages.unwrap_or_default() {
        m.check_role()?;
        messages.push(SimMessage::new(m.role, m.content.unwrap_or_default()));
    }
    Accepted::new(sim, Kind::Chat, req.fields, messages, None)
}

fn accept_generate(sim: &Sim, body: Value) -> Result<Accepted, Failure> {
    let req: GenerateRequest = typed_generation(body)?;
    let prompt = req.prompt.unwrap_or_default();
    let messages = if prompt.is_empty() {
        Vec::new()
    } else {
        reply::generate_messages(req.system.as_deref(), &prompt)
    };
    Accepted::new(sim, Kind::Generate, req.fields, messages, Some(prompt))
}

/// Chat completion, NDJSON stream unless `stream: false`.
#[utoipa::path(post, path = "/api/chat", responses((status = 200, description = "OK")))]
async fn chat(sim: web::Data<Sim>, payload: web::Payload) -> HttpResponse {
    let started = Instant::now();
    count(&sim, |r| &mut r.chat);
    let body = match read_json(payload).await {
        Ok(body) => body,
        Err(failure) => return failure.response(),
    };
    sim.record("chat", &body);
    match accept_chat(&sim, body) {
        Ok(accepted) => run(&sim, accepted, started).await,
        Err(failure) => failure.response(),
    }
}

/// Completion, NDJSON stream unless `stream: false`.
#[utoipa::path(post, path = "/api/generate", responses((status = 200, description = "OK")))]
async fn generate(sim: web::Data<Sim>, payload: web::Payload) -> HttpResponse {
    let started = Instant::now();
    count(&sim, |r| &mut r.generate);
    let body = match read_json(payload).await {
        Ok(body) => body,
        Err(failure) => return failure.response(),
    };
    sim.record("generate", &body);
    match accept_generate(&sim, body) {
        Ok(accepted) => run(&sim, accepted, started).await,
        Err(failure) => failure.response(),
    }
}
