//! Log lines in the Elastic Common Schema, and the size-rotated log files.
//!
//! [`EcsLayer`] is the `tracing` layer that turns each event into one JSON
//! line and writes it to stdout and, when `log.dir` is set, to [`LogFiles`]:
//!
//! ```text
//! {"@timestamp":"2025-01-01T12:00:00.123456Z","log.level":"info","message":"message processed",
//!  "ecs.version":"1.6.0","service.name":"chat","log.logger":"chat::exchange",
//!  "trace.id":"4bf92f3577b34da6a3ce929d0e0e4736","span.id":"00f067aa0ba902b7",
//!  "session_id":"…","message_length":5,"processing_time_ms":12,"http.request.method":"POST",...}
//! ```
//!
//! - `trace.id` and `span.id` are those of the OpenTelemetry span current
//!   when the event was emitted (see [`crate::trace_context`]).
//! - The event's own fields come next, flat at the top level (ECS allows
//!   custom top-level keys), then the fields of its enclosing spans, the
//!   innermost winning; `otel.*` span fields are for the exporter only.
//! - A field named `error` becomes `error.message` (the whole source chain
//!   when it was recorded as an error value), and `error_type` `error.type`.
//!
//! The formatter is ours, kept over the two ECS crates on crates.io (read
//! 2026-12, by their documentation): `tracing-ecs` 0.5 nests dotted keys
//! into objects by default and says that span fields can repeat a key in
//! the same line; `tracing-ecs-formatter` 1.0 writes ECS 8.11 with
//! upper-case levels and millisecond times. Neither turns an `error` field
//! into `error.message` with its chain of causes. The daily check, the
//! dashboards' log queries and the tests read the fields above, so they
//! stay as they are.
//!
//! [`LineWriter`] writes the lines: the thread that logs only copies its line
//! into memory, and a background thread writes what has gathered every
//! [`FLUSH_EVERY`], one `write` per destination. A request's thread never
//! waits on the disk: under load a synchronous `write` to a log file now and
//! then blocks for tens of milliseconds (the kernel flushing dirty pages, the
//! file system committing its journal), and with one HTTP worker a service
//! would stall every request meanwhile. WARN and ERROR lines are written at
//! once, after every line before them; everything is written at shutdown
//! ([`flush`]) and when a thread panics. A process killed outright loses at
//! most the last [`FLUSH_EVERY`] of INFO lines. Kept over `tracing-appender`'s
//! non-blocking writer, which was tried and measured (docs/performance.md):
//! it wakes its writer thread for every line, and at 1,000 messages a second
//! the gateway used 11 % more CPU (0.319 against 0.288 cores, two runs each)
//! and chat 3.5 % more.
//!
//! The files are `file-rotate`'s: at the first write after `x.log` passed
//! its size it is shifted to `x.log.1` (… `x.log.N`, dropping what falls
//! past `max_files`) and a new `x.log` starts. A write is one batch of whole
//! lines, so a file ends with a whole line and passes its size by less than
//! one batch (a 20 ms batch, or one WARN/ERROR line with the lines before
//! it).

use std::fmt::{self, Write as _};
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use file_rotate::compression::Compression;
use file_rotate::suffix::AppendCount;
use file_rotate::{ContentLimit, FileRotate};

use opentelemetry::trace::TraceContextExt;
use serde_json::Value;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

/// The ECS version the lines follow (the one the ecs-logging libraries use).
const ECS_VERSION: &str = "1.6.0";

/// The layer writing ECS JSON lines.
pub struct EcsLayer {
    service: &'static str,
    writer: Arc<LineWriter>,
}

impl EcsLayer {
    /// Lines of `service`, written by `writer`.
    pub fn new(service: &'static str, writer: Arc<LineWriter>) -> Self {
        Self { service, writer }
    }
}

/// How long an INFO line may wait in memory before it is written.
pub const FLUSH_EVERY: Duration = Duration::from_millis(20);

/// Past this many bytes waiting, the logging thread writes them itself.
const MAX_PENDING: usize = 256 * 1024;

/// The process's line writer, for [`flush`].
static WRITER: OnceLock<Arc<LineWriter>> = OnceLock::new();

/// Writes every waiting line now (at shutdown; a no-op before logging starts).
pub fn flush() {
    if let Some(writer) = WRITER.get() {
        writer.flush();
    }
}

/// Lines waiting to be written, and where they go (see the module docs).
pub struct LineWriter {
    to_stdout: bool,
    to_files: bool,
    /// Set when there is no background thread: every line is written at once.
    at_once: AtomicBool,
    pending: Mutex<Pending>,
    gathered: Condvar,
    /// The destinations; holding the lock is writing, so lines keep their order.
    sinks: Mutex<Sinks>,
}

#[derive(Default)]
struct Pending {
    stdout: Vec<u8>,
    all: Vec<u8>,
    errors: Vec<u8>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.stdout.is_empty() && self.all.is_empty()
    }
}

struct Sinks {
    stdout: bool,
    files: Option<LogFiles>,
}

impl LineWriter {
    /// A writer to stdout when `stdout` is true and to `files`, with its
    /// background thread.
    pub fn start(stdout: bool, files: Option<LogFiles>) -> Arc<Self> {
        let writer = Arc::new(Self {
            to_stdout: stdout,
            to_files: files.is_some(),
            at_once: AtomicBool::new(false),
            pending: Mutex::default(),
            gathered: Condvar::new(),
            sinks: Mutex::new(Sinks { stdout, files }),
        });
        let background = writer.clone();
        let spawned = std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || background.write_every(FLUSH_EVERY));
        if spawned.is_err() {
            writer.at_once.store(true, Ordering::Relaxed);
        }
        writer
    }

    /// Makes this the writer [`flush`] flushes, and flushes on panic.
    pub fn install(self: &Arc<Self>) {
        if WRITER.set(self.clone()).is_ok() {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                flush();
                previous(info);
            }));
        }
    }

    /// Queues one line (with its newline) of `level`.
    pub fn write(&self, level: Level, line: &[u8]) {
        let (was_empty, full) = {
            let mut pending = self.lock_pending();
            let was_empty = pending.is_empty();
            if self.to_stdout {
                pending.stdout.extend_from_slice(line);
            }
            if self.to_files {
                pending.all.extend_from_slice(line);
                if level == Level::ERROR {
                    pending.errors.extend_from_slice(line);
                }
            }
            let waiting = pending.stdout.len().max(pending.all.len());
            (was_empty, waiting > MAX_PENDING)
        };
        let urgent = matches!(level, Level::WARN | Level::ERROR);
        if urgent || full || self.at_once.load(Ordering::Relaxed) {
            self.flush();
        } else if was_empty {
            self.gathered.notify_one();
        }
    }

    /// Writes every waiting line now. A failed write is dropped: there is
    /// nowhere left to report it.
    pub fn flush(&self) {
        let sinks = self.lock_sinks();
        let lines = std::mem::take(&mut *self.lock_pending());
        if sinks.stdout && !lines.stdout.is_empty() {
            let mut stdout = io::stdout().lock();
            let _ = stdout
                .write_all(&lines.stdout)
                .and_then(|()| stdout.flush());
        }
        if let Some(files) = &sinks.files {
            files.write(&lines);
        }
    }

    /// The background thread: once lines arrive, waits `every` for more,
    /// then writes them all.
    fn write_every(&self, every: Duration) {
        loop {
            {
                let mut pending = self.lock_pending();
                while pending.is_empty() {
                    pending = self
                        .gathered
                        .wait(pending)
                        .unwrap_or_else(PoisonError::into_inner);
                }
            }
            std::thread::sleep(every);
            self.flush();
        }
    }

    fn lock_pending(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_sinks(&self) -> MutexGuard<'_, Sinks> {
        self.sinks.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<S> Layer<S> for EcsLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        span.extensions_mut().insert(SpanFields(fields));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut extensions = span.extensions_mut();
        match extensions.get_mut::<SpanFields>() {
            Some(SpanFields(fields)) => values.record(fields),
            None => {
                let mut fields = Fields::default();
                values.record(&mut fields);
                extensions.insert(SpanFields(fields));
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        let mut fields = Fields::default();
        event.record(&mut fields);
        let mut line = EcsLine::start(self.service, meta, &mut fields);
        line.trace_context();
        line.fields(&fields, normalized.is_some());
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope {
                if let Some(SpanFields(span_fields)) = span.extensions().get::<SpanFields>() {
                    line.fields(span_fields, false);
                }
            }
        }
        self.writer.write(*meta.level(), line.finish().as_bytes());
    }
}

/// Fields recorded on a span, kept for the lines of events inside it.
struct SpanFields(Fields);

/// Field values in recording order; a field recorded again replaces its value.
#[derive(Default)]
struct Fields(Vec<(&'static str, Value)>);

impl Fields {
    fn put(&mut self, name: &'static str, value: Value) {
        match self.0.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => self.0.push((name, value)),
        }
    }

    fn take(&mut self, name: &str) -> Option<Value> {
        let at = self.0.iter().position(|(n, _)| *n == name)?;
        Some(self.0.remove(at).1)
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field.name(), Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field.name(), Value::from(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field.name(), Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field.name(), Value::from(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field.name(), Value::from(value));
    }

    fn record_i128(&mut self, field: &Field, value: i128) {
        let value =
            i64::try_from(value).map_or_else(|_| Value::from(value.to_string()), Value::from);
        self.put(field.name(), value);
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        let value =
            u64::try_from(value).map_or_else(|_| Value::from(value.to_string()), Value::from);
        self.put(field.name(), value);
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        let mut text = value.to_string();
        let mut source = value.source();
        while let Some(cause) = source {
            let _ = write!(text, ": {cause}");
            source = cause.source();
        }
        self.put(field.name(), Value::from(text));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field.name(), Value::from(format!("{value:?}")));
    }
}

/// One JSON line being written: the ECS keys first, then fields, each key
/// written once.
struct EcsLine {
    out: String,
    written: Vec<&'static str>,
}

impl EcsLine {
    fn start(service: &str, meta: &Metadata<'_>, fields: &mut Fields) -> Self {
        let mut line = Self {
            out: String::with_capacity(512),
            written: Vec::new(),
        };
        let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ");
        let _ = write!(line.out, "{{\"@timestamp\":\"{now}\"");
        line.key("log.level", &Value::from(level_name(meta.level())));
        let message = fields.take("message").unwrap_or_else(|| Value::from(""));
        line.key("message", &message);
        line.key("ecs.version", &Value::from(ECS_VERSION));
        line.key("service.name", &Value::from(service));
        line.key("log.logger", &Value::from(meta.target()));
        if let Some(error) = fields.take("error") {
            line.key("error.message", &error);
        }
        if let Some(kind) = fields.take("error_type") {
            line.key("error.type", &kind);
        }
        line
    }

    /// `trace.id` and `span.id` of the current OpenTelemetry span, if any.
    fn trace_context(&mut self) {
        let ids = opentelemetry::Context::map_current(|cx| {
            let span = cx.span();
            let context = span.span_context();
            context.is_valid().then(|| {
                (
                    context.trace_id().to_string(),
                    context.span_id().to_string(),
                )
            })
        });
        if let Some((trace_id, span_id)) = ids {
            self.key("trace.id", &Value::from(trace_id));
            self.key("span.id", &Value::from(span_id));
        }
    }

    /// Fields not written yet; `from_log` drops the `log.*` fields that
    /// `tracing-log` adds to events of the `log` crate (they are normalized
    /// into the metadata instead).
    fn fields(&mut self, fields: &Fields, from_log: bool) {
        for (name, value) in &fields.0 {
            let skip = name.starts_with("otel.") || (from_log && name.starts_with("log."));
            if !skip && !self.written.contains(name) {
                self.key(name, value);
            }
        }
    }

    fn key(&mut self, name: &'static str, value: &Value) {
        self.written.push(name);
        self.out.push(',');
        // A `&str` and a `Value` always serialize.
        self.out
            .push_str(&serde_json::to_string(name).unwrap_or_default());
        self.out.push(':');
        self.out
            .push_str(&serde_json::to_string(value).unwrap_or_else(|_| "null".into()));
    }

    fn finish(mut self) -> String {
        self.out.push_str("}\n");
        self.out
    }
}

fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "error",
        Level::WARN => "warn",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    }
}

/// A service's two log files: `<service>.log` (every line) and
/// `<service>.error.log` (ERROR lines only), both rotated by size.
pub struct LogFiles {
    all: Mutex<RotatingFile>,
    errors: Mutex<RotatingFile>,
}

/// A log file rotated by size (`file-rotate`).
type RotatingFile = FileRotate<AppendCount>;

impl LogFiles {
    /// Opens (creating `dir` if needed) the files of `service` in `dir`;
    /// `max_files` rotated files are kept of each.
    pub fn open(dir: &Path, service: &str, max_bytes: u64, max_files: usize) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        let open = |name: String| -> io::Result<Mutex<RotatingFile>> {
            let path = dir.join(name);
            // file-rotate reports an unwritable file only at the first
            // write: try it here, so start-up can say so.
            OpenOptions::new().create(true).append(true).open(&path)?;
            let limit = usize::try_from(max_bytes).unwrap_or(usize::MAX);
            Ok(Mutex::new(FileRotate::new(
                path,
                AppendCount::new(max_files),
                ContentLimit::BytesSurpassed(limit),
                Compression::None,
                None,
            )))
        };
        Ok(Self {
            all: open(format!("{service}.log"))?,
            errors: open(format!("{service}.error.log"))?,
        })
    }

    /// Writes waiting lines, one `write` per file. A failed write is
    /// dropped: there is nowhere left to report it.
    fn write(&self, lines: &Pending) {
        for (file, lines) in [(&self.all, &lines.all), (&self.errors, &lines.errors)] {
            if !lines.is_empty() {
                let mut file = file.lock().unwrap_or_else(PoisonError::into_inner);
                let _ = file.write_all(lines).and_then(|()| file.flush());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::time::Duration;

    use super::*;
    use opentelemetry::trace::TracerProvider as _;
    use tracing_subscriber::layer::SubscriberExt;

    fn read_lines(path: &Path) -> Vec<serde_json::Value> {
        fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    /// Runs `body` under a subscriber with the ECS layer (files in `dir`,
    /// nothing on stdout) and the OpenTelemetry layer, like a service.
    fn with_ecs_logs(dir: &Path, max_bytes: u64, max_files: usize, body: impl FnOnce()) {
        let files = LogFiles::open(dir, "svc", max_bytes, max_files).unwrap();
        let writer = LineWriter::start(false, Some(files));
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")))
            .with(EcsLayer::new("svc", writer.clone()));
        tracing::subscriber::with_default(subscriber, body);
        writer.flush();
    }

    #[test]
    fn lines_carry_the_ecs_keys_and_flat_fields() {
        let dir = tempfile::tempdir().unwrap();
        with_ecs_logs(dir.path(), 1 << 20, 5, || {
            tracing::info!(addr = "127.0.0.1:1234", "listening");
            let span = tracing::info_span!("request", url.path = "/chat", otel.kind = "server");
            span.in_scope(|| {
                tracing::info!(
                    session_id = "s-1",
                    message_length = 5_u64,
                    "message processed"
                );
            });
        });
        let lines = read_lines(&dir.path().join("svc.log"));
        assert_eq!(lines.len(), 2, "{lines:?}");

        let listening = &lines[0];
        assert_eq!(listening["message"], "listening");
        assert_eq!(listening["addr"], "127.0.0.1:1234");
        assert_eq!(listening["log.level"], "info");
        assert_eq!(listening["service.name"], "svc");
        assert_eq!(listening["ecs.version"], ECS_VERSION);
        assert!(
            listening["log.logger"]
                .as_str()
                .unwrap()
                .contains("logging")
        );
        assert!(listening.get("trace.id").is_none(), "no span, no trace id");
        let stamp = listening["@timestamp"].as_str().unwrap();
        assert!(
            chrono::DateTime::parse_from_rfc3339(stamp).is_ok(),
            "{stamp}"
        );
        assert!(
            stamp.ends_with('Z') && stamp.len() == 27,
            "microseconds, UTC: {stamp}"
        );

        let processed = &lines[1];
        assert_eq!(processed["session_id"], "s-1");
        assert_eq!(processed["message_length"], 5);
        assert_eq!(processed["url.path"], "/chat", "span fields are added");
        assert!(processed.get("otel.kind").is_none());
        let trace_id = processed["trace.id"].as_str().unwrap();
        let span_id = processed["span.id"].as_str().unwrap();
        assert_eq!(trace_id.len(), 32, "{trace_id}");
        assert_eq!(span_id.len(), 16, "{span_id}");
        assert!(trace_id.chars().all(|c| c.is_ascii_hexdigit()) && trace_id != "0".repeat(32));
    }

    #[test]
    fn an_error_field_becomes_error_message_and_goes_to_the_error_file() {
        #[derive(Debug, thiserror::Error)]
        #[error("query failed")]
        struct Outer(#[source] io::Error);

        let dir = tempfile::tempdir().unwrap();
        with_ecs_logs(dir.path(), 1 << 20, 5, || {
            tracing::warn!(error = "slow", "warned");
            let error = Outer(io::Error::other("connection reset"));
            tracing::error!(
                error = &error as &dyn std::error::Error,
                error_type = "DbError",
                "write failed"
            );
        });
        let errors = read_lines(&dir.path().join("svc.error.log"));
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0]["log.level"], "error");
        assert_eq!(errors[0]["message"], "write failed");
        assert_eq!(errors[0]["error.message"], "query failed: connection reset");
        assert_eq!(errors[0]["error.type"], "DbError");
        assert!(errors[0].get("error").is_none());
        let all = read_lines(&dir.path().join("svc.log"));
        assert_eq!(all.len(), 2);
        assert_eq!(all[0]["error.message"], "slow");
    }

    #[test]
    fn files_rotate_at_the_size_limit_and_the_error_file_holds_only_errors() {
        const MAX: u64 = 1024;
        /// A write is one batch of whole lines; here every third line is an
        /// ERROR, written at once with the lines before it, so a batch is
        /// at most three lines.
        const BATCH: u64 = 3 * 512;
        let dir = tempfile::tempdir().unwrap();
        with_ecs_logs(dir.path(), MAX, 2, || {
            for i in 0..2000 {
                if i % 3 == 0 {
                    tracing::error!(i, error = "boom", "failed {i}");
                } else {
                    tracing::info!(i, "line {i}");
                }
            }
        });
        let mut names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "svc.error.log",
                "svc.error.log.1",
                "svc.error.log.2",
                "svc.log",
                "svc.log.1",
                "svc.log.2"
            ],
            "two rotated files kept per log"
        );
        for name in &names {
            let text = fs::read_to_string(dir.path().join(name)).unwrap();
            let len = u64::try_from(text.len()).unwrap();
            assert!(len < MAX + BATCH, "{name} has {len} bytes");
            assert!(
                text.is_empty() || text.ends_with('\n'),
                "{name} ends with a whole line"
            );
            if name.starts_with("svc.error.log") {
                for line in read_lines(&dir.path().join(name)) {
                    assert_eq!(line["log.level"], "error", "{name}: {line}");
                }
            }
        }
        // Oldest kept in `.2`, newest in the live file: in order, ending
        // with the last line.
        let kept: Vec<u64> = ["svc.log.2", "svc.log.1", "svc.log"]
            .iter()
            .flat_map(|name| read_lines(&dir.path().join(name)))
            .map(|line| line["i"].as_u64().unwrap())
            .collect();
        assert!(kept.windows(2).all(|w| w[0] + 1 == w[1]), "{kept:?}");
        assert_eq!(kept.last(), Some(&1999));
    }

    #[test]
    fn info_lines_are_written_in_the_background_and_warnings_at_once_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let files = LogFiles::open(dir.path(), "svc", 1 << 20, 2).unwrap();
        let writer = LineWriter::start(false, Some(files));
        let log = dir.path().join("svc.log");
        writer.write(Level::INFO, b"first\n");
        writer.write(Level::WARN, b"second\n");
        assert_eq!(
            fs::read_to_string(&log).unwrap(),
            "first\nsecond\n",
            "a warning is written at once, after what came before it"
        );
        writer.write(Level::INFO, b"third\n");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while fs::read_to_string(&log).unwrap().lines().count() < 3 {
            assert!(std::time::Instant::now() < deadline, "never written");
            std::thread::sleep(FLUSH_EVERY);
        }
        assert_eq!(fs::read_to_string(&log).unwrap(), "first\nsecond\nthird\n");
        writer.write(Level::ERROR, b"fourth\n");
        let errors = dir.path().join("svc.error.log");
        assert_eq!(fs::read_to_string(errors).unwrap(), "fourth\n");
    }

    #[test]
    fn an_unwritable_directory_fails_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a-file");
        fs::write(&file, "").unwrap();
        assert!(LogFiles::open(&file, "svc", 1024, 2).is_err());
    }
}
