//! Talking to chat: [`forward`] sends an exchange as `/api/chat` does and
//! reads the answer ([`Answer`]: a whole [`ChatResponse`], or its events
//! read by [`events`]); [`Pending::respond`] finishes the client's response
//! (stream slot, exchange id, overhead). [`catalog`] reads chat's model list.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use actix_web::HttpRequest;
use actix_web::HttpResponse;
use actix_web::http::header::{HeaderName, HeaderValue};
use bytes::Bytes;
use chatbot_common::api::{Catalog, ChatResponse, ExchangeRequest};
use chatbot_common::error::{ApiError, ErrorBody, ErrorCode};
use chatbot_common::upstream::{LineBuffer, Relayed};
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use uuid::Uuid;

use super::{CompatError, MESSAGE_ID_HEADER};
use crate::routes::{State, stream_slot, with_caller};

/// One of chat's stream events.
#[derive(Debug)]
pub enum ChatEvent {
    /// A piece of the reply.
    Token(String),
    /// The reply is complete.
    Done(Box<ChatResponse>),
    /// The exchange failed after its first token.
    Failed(ApiError),
}

/// What chat answered an exchange.
pub enum Answer {
    /// The whole reply.
    Whole(Box<ChatResponse>),
    /// The reply as it is made.
    Stream(BoxStream<'static, ChatEvent>),
}

/// What the response to an exchange sent to chat needs to be finished.
pub struct Pending {
    started: Instant,
    waited: Option<Duration>,
    held: Option<access::Slot>,
    id: Uuid,
}

/// Sends `exchange` to chat as `/api/chat` does (the key's stream slot for
/// a stream, the key named to chat, the upstream timeout for a whole answer).
pub async fn forward(
    req: &HttpRequest,
    state: &State,
    exchange: &ExchangeRequest,
    id: Uuid,
) -> Result<(Answer, Pending), CompatError> {
    // Its user and messages were checked as they were read (`user_of`,
    // `Conversation::split`); chat checks them again.
    let started = Instant::now();
    let held = stream_slot(req, exchange.stream).await?;
    let mut call = with_caller(req, state.chat.post("/chat")).json(exchange);
    if !exchange.stream {
        call = call.timeout(state.upstream_timeout);
    }
    let relayed = state.chat.forward(call).await?;
    let waited = relayed.llm_wait();
    let answer = match relayed {
        Relayed::Whole(_, body, _) => {
            let response = serde_json::from_slice(&body).map_err(|e| ApiError::internal(&e))?;
            Answer::Whole(Box::new(response))
        }
        Relayed::Events(response) => Answer::Stream(events(response.bytes_stream()).boxed()),
    };
    let pending = Pending {
        started,
        waited,
        held,
        id,
    };
    Ok((answer, pending))
}

/// A rendered reply: one JSON body, or a stream of `content_type`.
pub enum Reply {
    /// `application/json`.
    Json(Vec<u8>),
    /// Server-sent events or NDJSON.
    Stream(&'static str, BoxStream<'static, Bytes>),
}

impl Pending {
    /// The response carrying `reply`: it holds the stream slot until the
    /// stream ends, names the stored exchange, and records the overhead.
    pub fn respond(self, state: &State, reply: Reply) -> HttpResponse {
        let (mut response, streamed) = match reply {
            Reply::Json(body) => (
                HttpResponse::Ok()
                    .content_type("application/json")
                    .body(body),
                false,
            ),
            Reply::Stream(content_type, body) => {
                let held = self.held;
                let body = body.map(move |chunk| {
                    let _held = &held;
                    Ok::<_, std::convert::Infallible>(chunk)
                });
                let response = HttpResponse::Ok()
                    .content_type(content_type)
                    .insert_header(("Cache-Control", "no-cache"))
                    .insert_header(("X-Accel-Buffering", "no"))
                    .streaming(body);
                (response, true)
            }
        };
        if let Ok(id) = HeaderValue::from_str(&self.id.to_string()) {
            response
                .headers_mut()
                .insert(HeaderName::from_static(MESSAGE_ID_HEADER), id);
        }
        state
            .overhead
            .finish(&mut response, self.started, self.waited, streamed);
        response
    }
}

/// Reads chat's server-sent events (`event: token|done|error`, `data:`
/// JSON) from `bytes`. A stream that breaks or ends before `done` ends with
/// a [`ChatEvent::Failed`], so a client never takes a cut reply for a whole one.
pub fn events<E: 'static>(
    bytes: impl Stream<Item = Result<Bytes, E>> + Send + 'static,
) -> impl Stream<Item = ChatEvent> + Send + 'static {
    let parser = EventParser::default();
    futures::stream::unfold(
        (bytes.boxed(), parser, VecDeque::new()),
        |(mut bytes, mut parser, mut ready)| async move {
            loop {
                if let Some(event) = ready.pop_front() {
                    return Some((event, (bytes, parser, ready)));
                }
                if parser.finished {
                    return None;
                }
                match bytes.next().await {
                    Some(Ok(chunk)) => ready.extend(parser.push(&chunk)),
                    Some(Err(_)) | None => {
                        parser.finished = true;
                        ready.push_back(ChatEvent::Failed(ApiError::new(
                            ErrorCode::ServiceUnavailable,
                            "the chat service stopped in the middle of the reply",
                        )));
                    }
                }
            }
        },
    )
}

/// Turns lines of server-sent events into [`ChatEvent`]s.
#[derive(Default)]
struct EventParser {
    lines: LineBuffer,
    event: Option<String>,
    /// `done` or `error` was read: nothing follows.
    finished: bool,
}

impl EventParser {
    fn push(&mut self, chunk: &[u8]) -> Vec<ChatEvent> {
        let mut events = Vec::new();
        for line in self.lines.push(chunk) {
            if self.finished {
                break;
            }
            if let Some(name) = line.strip_prefix(b"event:") {
                self.event = Some(String::from_utf8_lossy(name.trim_ascii()).into_owned());
            } else if let Some(data) = line.strip_prefix(b"data:") {
                let event = self.event.take().unwrap_or_default();
                if let Some(parsed) = parse_event(&event, data.trim_ascii()) {
                    self.finished = !matches!(parsed, ChatEvent::Token(_));
                    events.push(parsed);
                }
            }
        }
        events
    }
}

fn parse_event(name: &str, data: &[u8]) -> Option<ChatEvent> {
    #[derive(serde::Deserialize)]
    struct Token {
        content: String,
    }
    let unreadable = || {
        ChatEvent::Failed(ApiError::new(
            ErrorCode::ServiceUnavailable,
            "the chat service sent an unreadable event",
        ))
    };
    Some(match name {
        "token" => serde_json::from_slice::<Token>(data)
            .map_or_else(|_| unreadable(), |t| ChatEvent::Token(t.content)),
        "done" => serde_json::from_slice(data)
            .map_or_else(|_| unreadable(), |r| ChatEvent::Done(Box::new(r))),
        "error" => serde_json::from_slice::<ErrorBody>(data)
            .map_or_else(|_| unreadable(), |b| ChatEvent::Failed(b.error)),
        _ => return None,
    })
}

/// What the LLM backends serve (chat's `GET /models`).
pub async fn catalog(state: &State) -> Result<Catalog, CompatError> {
    let call = state.chat.get("/models").timeout(state.upstream_timeout);
    match state.chat.forward(call).await? {
        Relayed::Whole(_, body, _) => {
            serde_json::from_slice(&body).map_err(|e| ApiError::internal(&e).into())
        }
        Relayed::Events(_) => Err(ApiError::new(
            ErrorCode::ServiceUnavailable,
            "the chat service answered the model list with a stream",
        )
        .into()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(chunks: &[&str]) -> Vec<ChatEvent> {
        let stream = futures::stream::iter(
            chunks
                .iter()
                .map(|c| Ok::<_, std::io::Error>(Bytes::from(c.to_string())))
                .collect::<Vec<_>>(),
        );
        futures::executor::block_on(events(stream).collect())
    }

    const DONE: &str = r#"{"session_id":null,"message_id":"6f1c0a52-4b8e-4d1e-9a8e-0e6a4f0b9c11","reply":"Hi there","type":"greeting","urgency":"LOW","model":"m","response_time_ms":3,"usage":{"prompt_tokens":5,"completion_tokens":2},"finish_reason":"stop"}"#;

    #[test]
    fn events_split_across_chunks_are_read_whole() {
        let done = format!("event: done\ndata: {DONE}\n\n");
        let (a, b) = done.split_at(20);
        let events = parse(&[
            "event: tok",
            "en\ndata: {\"content\":\"Hi\"}\n\n",
            "event: token\ndata: {\"content\":\" there\"}\n\n",
            a,
            b,
        ]);
        assert!(matches!(&events[0], ChatEvent::Token(t) if t == "Hi"));
        assert!(matches!(&events[1], ChatEvent::Token(t) if t == " there"));
        assert!(matches!(&events[2], ChatEvent::Done(r) if r.reply == "Hi there"));
        assert_eq!(events.len(), 3);
    }

    #[test]
    fn a_stream_cut_before_done_ends_with_a_failure() {
        let events = parse(&["event: token\ndata: {\"content\":\"Hi\"}\n\n"]);
        assert_eq!(events.len(), 2);
        assert!(
            matches!(&events[1], ChatEvent::Failed(e) if e.code == ErrorCode::ServiceUnavailable)
        );
    }

    #[test]
    fn an_error_event_is_passed_on_with_its_code() {
        let events = parse(&[
            "event: token\ndata: {\"content\":\"Hi\"}\n\n",
            "event: error\ndata: {\"error\":{\"code\":\"llm_timeout\",\"message\":\"slow\"}}\n\n",
        ]);
        assert!(matches!(&events[1], ChatEvent::Failed(e) if e.code == ErrorCode::LlmTimeout));
        assert_eq!(events.len(), 2);
    }
}
