//! The HTTP routes: Ollama's API over the [`Engine`], in Ollama's formats
//! (the wire types of `ollama-wire`, the same the simulator speaks).

use std::convert::Infallible;
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde_json::json;
use tokio::sync::mpsc::UnboundedReceiver;

use chatbot_common::server::resource;
use ollama_wire::{
    AssistantMessage, ChatChunk, ChatRequest, Failure, GenerateChunk, GenerateRequest,
    GenerationBody, GenerationFields, KeepAlive, Metrics, ModelDetails, ModelList, OLLAMA_VERSION,
    PsModel, ShowRequest, TagModel, encode, error, json_response, ndjson_line, now, read_json,
    timestamp, typed, typed_generation,
};

use crate::engine::{Engine, Event, Finished, ModelInfo, Prompt};
use crate::metrics::{self as instruments, Outcome};
use crate::options::GenerationOptions;
use crate::prompt::Message;

/// What the routes share.
#[derive(Clone)]
pub struct State {
    /// The model runner.
    pub engine: Engine,
    /// Counts refused requests.
    pub metrics: instruments::Metrics,
    /// When the model file was last changed (`modified_at`).
    pub modified_at: DateTime<Utc>,
}

/// Adds Ollama's routes to `cfg`.
pub fn routes(cfg: &mut web::ServiceConfig, state: State) {
    cfg.app_data(web::Data::new(state))
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
        .service(resource("/api/generate", "POST").route(web::post().to(generate)));
}

/// The OpenAPI document: the routes (Ollama's own documentation defines
/// their bodies).
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "local-llm",
        description = "A small real model served over Ollama's API. See docs/local-llm.md."
    ),
    paths(root, version, tags, ps, show, chat, generate)
)]
pub struct LocalLlmApi;

/// Liveness text `Ollama is running`, as Ollama answers.
#[utoipa::path(get, path = "/", responses((status = 200, description = "OK")))]
async fn root() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body("Ollama is running")
}

/// The Ollama API version this service follows.
#[utoipa::path(get, path = "/api/version", responses((status = 200, description = "OK")))]
async fn version() -> HttpResponse {
    HttpResponse::Ok().json(json!({"version": OLLAMA_VERSION}))
}

fn details(info: &ModelInfo) -> ModelDetails {
    ModelDetails::gguf(&info.architecture, &info.parameter_size, &info.quantization)
}

/// The served model.
#[utoipa::path(get, path = "/api/tags", responses((status = 200, description = "OK")))]
async fn tags(state: web::Data<State>) -> HttpResponse {
    let info = state.engine.info();
    let model = TagModel {
        name: info.name.clone(),
        model: info.name.clone(),
        modified_at: timestamp(state.modified_at),
        size: info.file.size,
        digest: info.file.sha256.clone(),
        details: details(info),
    };
    HttpResponse::Ok().json(ModelList {
        models: vec![model],
    })
}

/// The loaded model: always the served one (it never unloads).
#[utoipa::path(get, path = "/api/ps", responses((status = 200, description = "OK")))]
async fn ps(state: web::Data<State>) -> HttpResponse {
    let info = state.engine.info();
    let model = PsModel {
        name: info.name.clone(),
        model: info.name.clone(),
        size: info.size_in_memory,
        digest: info.file.sha256.clone(),
        details: details(info),
        expires_at: timestamp(Utc::now() + chrono::Duration::days(365 * 100)),
        size_vram: 0,
        context_length: u64::from(info.context_default),
    };
    HttpResponse::Ok().json(ModelList {
        models: vec![model],
    })
}

/// The model's details, template and metadata.
#[utoipa::path(post, path = "/api/show", responses((status = 200, description = "OK")))]
async fn show(state: web::Data<State>, payload: web::Payload) -> HttpResponse {
    let req: ShowRequest = match read_json(payload).await.and_then(typed) {
        Ok(req) => req,
        Err(failure) => return failure.response(),
    };
    let info = state.engine.info();
    if let Err(failure) = resolve(info, req.requested()) {
        return failure.response();
    }
    let arch = &info.architecture;
    let mut model_info = serde_json::Map::new();
    model_info.insert("general.architecture".into(), json!(arch));
    model_info.insert("general.parameter_count".into(), json!(info.parameters));
    model_info.insert(format!("{arch}.context_length"), json!(info.context_train));
    HttpResponse::Ok().json(json!({
        "license": "",
        "modelfile": format!("# Modelfile generated by local-llm\nFROM {}\n", info.file.path.display()),
        "parameters": format!("num_ctx {}", info.context_default),
        "template": info.template,
        "details": details(info),
        "model_info": model_info,
        "capabilities": ["completion"],
        "modified_at": timestamp(state.modified_at),
    }))
}

/// Ollama's 400 and 404 for the model a request names.
fn resolve(info: &ModelInfo, requested: &str) -> Result<(), Failure> {
    if requested.trim().is_empty() {
        return Err(Failure::bad_request("model is required"));
    }
    ollama_wire::find(std::slice::from_ref(&info.name), requested)
        .map(|_| ())
        .ok_or_else(|| Failure::model_not_found(requested))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Chat,
    Generate,
}

/// A validated generation request.
struct Accepted {
    kind: Kind,
    /// The model as the request spelled it (Ollama echoes it).
    model: String,
    /// None: nothing to generate, only load (or unload) the model.
    prompt: Option<Prompt>,
    unload: bool,
    stream: bool,
    options: GenerationOptions,
}

impl Accepted {
    /// A request for `prompt` with the fields both routes share checked.
    fn new(
        info: &ModelInfo,
        kind: Kind,
        fields: GenerationFields,
        prompt: Option<Prompt>,
    ) -> Result<Self, Failure> {
        resolve(info, &fields.model)?;
        if fields.wants_format() {
            return Err(Failure::bad_request(
                "format (structured outputs) is not supported by local-llm",
            ));
        }
        let unload = fields.keep_alive()? == KeepAlive::Unload;
        let options = GenerationOptions::from_request(fields.options.as_ref())
            .map_err(Failure::bad_request)?;
        Ok(Self {
            kind,
            stream: fields.streamed(),
            model: fields.model,
            prompt,
            unload,
            options,
        })
    }
}

fn accept_chat(info: &ModelInfo, req: ChatRequest) -> Result<Accepted, Failure> {
    // The model is checked before the tools and messages, as Ollama does.
    resolve(info, &req.fields.model)?;
    if req
        .tools
        .as_ref()
        .is_some_and(|t| t.as_array().is_none_or(|a| !a.is_empty()))
    {
        return Err(Failure::bad_request(format!(
            "{} does not support tools",
            req.fields.model
        )));
    }
    let mut messages = Vec::new();
    for m in req.messages.unwrap_or_default() {
        m.check_role()?;
        messages.push(Message::new(m.role, m.content.unwrap_or_default()));
    }
    let prompt = (!messages.is_empty()).then_some(Prompt::Chat(messages));
    Accepted::new(info, Kind::Chat, req.fields, prompt)
}

fn accept_generate(info: &ModelInfo, req: GenerateRequest) -> Result<Accepted, Failure> {
    let prompt = req.prompt.unwrap_or_default();
    let prompt = if prompt.is_empty() {
        None
    } else if req.raw.unwrap_or(false) {
        Some(Prompt::Raw(prompt))
    } else {
        let system = req.system.filter(|s| !s.is_empty());
        let messages = system
            .map(|s| Message::new("system", s))
            .into_iter()
            .chain([Message::new("user", prompt)])
            .collect();
        Some(Prompt::Chat(messages))
    };
    Accepted::new(info, Kind::Generate, req.fields, prompt)
}

/// Reads a generation request with `accept`, then answers it.
async fn serve<R: GenerationBody>(
    state: &State,
    payload: web::Payload,
    accept: fn(&ModelInfo, R) -> Result<Accepted, Failure>,
) -> HttpResponse {
    let arrived = Instant::now();
    let accepted = read_json(payload)
        .await
        .and_then(typed_generation)
        .and_then(|req| accept(state.engine.info(), req));
    match accepted {
        Ok(accepted) => answer(state, accepted, arrived).await,
        Err(failure) => failure.response(),
    }
}

/// Chat completion, NDJSON stream unless `stream: false`.
#[utoipa::path(post, path = "/api/chat", responses((status = 200, description = "OK")))]
async fn chat(state: web::Data<State>, payload: web::Payload) -> HttpResponse {
    serve(&state, payload, accept_chat).await
}

/// Completion, NDJSON stream unless `stream: false`.
#[utoipa::path(post, path = "/api/generate", responses((status = 200, description = "OK")))]
async fn generate(state: web::Data<State>, payload: web::Payload) -> HttpResponse {
    serve(&state, payload, accept_generate).await
}

/// Writes a generation's objects in the route's shape.
struct Reply {
    kind: Kind,
    model: String,
    arrived: Instant,
}

impl Reply {
    /// A chunk of text, or with `done` the last object.
    fn object(&self, content: &str, done: Option<(&str, Option<&Finished>)>) -> Vec<u8> {
        let metrics = done.and_then(|(_, f)| f).map(|f| self.metrics(f));
        let done_reason = done.map(|(reason, _)| reason);
        match self.kind {
            Kind::Chat => encode(&ChatChunk {
                model: &self.model,
                created_at: now(),
                message: AssistantMessage::new(content),
                done_reason,
                done: done.is_some(),
                metrics,
            }),
            Kind::Generate => encode(&GenerateChunk {
                model: &self.model,
                created_at: now(),
                response: content,
                done: done.is_some(),
                done_reason,
                context: done.and_then(|(_, f)| f).map(|f| f.context.as_slice()),
                metrics,
            }),
        }
    }

    fn metrics(&self, finished: &Finished) -> Metrics {
        Metrics {
            total_duration: nanos(self.arrived.elapsed()),
            load_duration: nanos(finished.waited),
            prompt_eval_count: finished.prompt_tokens,
            prompt_eval_duration: nanos(finished.prompt_duration),
            eval_count: finished.generated,
            eval_duration: nanos(finished.generation_duration),
        }
    }

    fn finished(&self, content: &str, finished: &Finished) -> Vec<u8> {
        self.object(content, Some((finished.reason.as_str(), Some(finished))))
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

async fn answer(state: &State, accepted: Accepted, arrived: Instant) -> HttpResponse {
    let reply = Reply {
        kind: accepted.kind,
        model: accepted.model,
        arrived,
    };
    let Some(prompt) = accepted.prompt else {
        // The model is always loaded: "load" and "unload" only answer.
        let reason = if accepted.unload { "unload" } else { "load" };
        return json_response(reply.object("", Some((reason, None))));
    };
    let events = match state.engine.submit(prompt, accepted.options, arrived) {
        Ok(events) => events,
        Err(busy) => {
            state.metrics.ended(Outcome::Rejected);
            return HttpResponse::build(StatusCode::SERVICE_UNAVAILABLE)
                .insert_header(("Retry-After", "1"))
                .json(json!({"error": busy.to_string()}));
        }
    };
    if accepted.stream {
        stream(reply, events)
    } else {
        whole(reply, events).await
    }
}

/// NDJSON: a line per piece of text, then the last object (or an error
/// line). Dropping the body (the client hung up) cancels the generation.
fn stream(reply: Reply, events: UnboundedReceiver<Event>) -> HttpResponse {
    let body = futures::stream::unfold(Some((reply, events)), |state| async move {
        let (reply, mut events) = state?;
        let line = match events.recv().await {
            Some(Event::Text(text)) => {
                let line = ndjson_line(reply.object(&text, None));
                return Some((Ok::<Bytes, Infallible>(line), Some((reply, events))));
            }
            Some(Event::Done(finished)) => reply.finished("", &finished),
            Some(Event::Failed(reason)) => encode(&json!({ "error": reason })),
            None => encode(&json!({"error": "the model runner stopped"})),
        };
        Some((Ok(ndjson_line(line)), None))
    });
    HttpResponse::Ok()
        .content_type("application/x-ndjson")
        .streaming(body)
}

/// One object with the whole answer.
async fn whole(reply: Reply, mut events: UnboundedReceiver<Event>) -> HttpResponse {
    let mut content = String::new();
    loop {
        match events.recv().await {
            Some(Event::Text(text)) => content.push_str(&text),
            Some(Event::Done(finished)) => {
                return json_response(reply.finished(&content, &finished));
            }
            Some(Event::Failed(reason)) => {
                return error(StatusCode::INTERNAL_SERVER_ERROR, reason);
            }
            None => {
                return error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the model runner stopped",
                );
            }
        }
    }
}
