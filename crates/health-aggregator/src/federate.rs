//! Federation: one Prometheus exposition out of every service's.
//!
//! The aggregator serves a single `/metrics` endpoint carrying every
//! service's metrics, so one scrape target collects everything. Each service
//! exposes text format 0.0.4; [`merge`] parses those expositions, labels
//! every sample with the service it came from and writes one exposition that
//! is itself valid text format: each metric family appears once, with one
//! `HELP` and one `TYPE` line and all of its samples contiguous.
//!
//! Parsing is forgiving: a line that cannot be understood is left out and
//! counted in [`Merged::dropped_samples`], never a panic, so one service with
//! a broken exporter cannot take the federated endpoint down.
//!
//! Why not a crate: the `prometheus` crate the services use only encodes
//! (it has no text-format parser), and `prometheus-parse` 0.2.5, the
//! maintained parser on crates.io, was read against what federation needs
//! (2026-12): it folds every `_bucket` line of a histogram into one sample
//! per metric name, dropping all labels but `le` (so the per-route,
//! per-status histograms of our services would merge into one); it splits
//! label pairs on `,` and `=` without regard to quoting, so a value holding
//! either is cut; names with `:` do not match; and values and timestamps come
//! back as `f64` and `DateTime`, so writing an exposition again would be
//! hand-written anyway. The merge below keeps every label, value and
//! timestamp verbatim.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

/// The label naming the service a sample came from.
const SERVICE_LABEL: &str = "service";
/// The prefix given to a sample's own label that clashes with an added one.
const EXPORTED_PREFIX: &str = "exported_";
/// Separators between tokens of a line.
const BLANK: [char; 2] = [' ', '\t'];

/// The outcome of [`merge`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Merged {
    /// The merged exposition, in Prometheus text format 0.0.4.
    pub text: String,
    /// Input lines left out: lines that could not be parsed, and samples of
    /// a family whose type conflicts with an earlier service's family.
    pub dropped_samples: usize,
}

/// Merges several expositions, given as `(service, text)`, into one.
///
/// - Every sample gets a `service="<service>"` label. A sample that already
///   has a `service` label keeps its value under `exported_service` (with
///   more `exported_` prefixes while that name is taken too), as Prometheus
///   does when scraping with `honor_labels: false`.
/// - Families with the same name from different services are written once:
///   one `HELP` line (the first service's that has one), one `TYPE` line and
///   all their samples together. Families are sorted by name; a family's
///   samples are ordered by service name, then by their order in the input.
/// - Services are taken in order of name (ties in input order). When a
///   family's type differs from the one an earlier service gave it, or its
///   sample names clash with another family's (a counter `x_count` beside a
///   histogram `x`), the earlier family is kept and the later service's
///   samples of it are dropped and counted.
/// - Histogram and summary samples (`_bucket`, `_sum`, `_count`, and the
///   summary's own name) belong to the family declared by the `TYPE` lines
///   of their exposition; a sample of no declared family forms an untyped
///   family of its own name.
/// - Values (`NaN`, `+Inf`, exponents) and timestamps are kept verbatim, as
///   are escaped label values. Blank lines and comments other than `HELP`
///   and `TYPE` are dropped; unparseable lines are dropped and counted.
#[must_use]
pub fn merge(expositions: &[(String, String)]) -> Merged {
    let mut order: Vec<usize> = (0..expositions.len()).collect();
    order.sort_by(|&a, &b| expositions[a].0.cmp(&expositions[b].0));
    let services: Vec<Cow<'_, str>> = expositions
        .iter()
        .map(|(service, _)| escape_label_value(service))
        .collect();
    let mut merger = Merger::default();
    for index in order {
        let (_, text) = &expositions[index];
        let parsed = parse_exposition(text);
        merger.dropped += parsed.dropped;
        merger.size_hint += text.len();
        for (name, family) in parsed.families {
            merger.add(index, services[index].len(), name, family);
        }
    }
    merger.render(&services)
}

/// A metric type of the text format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
    Summary,
    Untyped,
}

impl Kind {
    /// The type named on a `TYPE` line.
    fn parse(word: &str) -> Option<Self> {
        match word {
            "counter" => Some(Self::Counter),
            "gauge" => Some(Self::Gauge),
            "histogram" => Some(Self::Histogram),
            "summary" => Some(Self::Summary),
            "untyped" => Some(Self::Untyped),
            _ => None,
        }
    }

    /// The name written on a `TYPE` line.
    fn as_str(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Histogram => "histogram",
            Self::Summary => "summary",
            Self::Untyped => "untyped",
        }
    }

    /// What a family's name is followed by in the names of its samples.
    fn suffixes(self) -> &'static [&'static str] {
        match self {
            Self::Histogram => &["_bucket", "_sum", "_count"],
            Self::Summary => &["", "_sum", "_count"],
            Self::Counter | Self::Gauge | Self::Untyped => &[""],
        }
    }
}

/// One label of a sample.
#[derive(Debug)]
struct Label<'a> {
    /// The label's name; owned only once renamed.
    name: Cow<'a, str>,
    /// The value as written, escapes included, without the quotes.
    value: &'a str,
}

/// One sample line.
#[derive(Debug)]
struct Sample<'a> {
    name: &'a str,
    labels: Vec<Label<'a>>,
    /// The value as written.
    value: &'a str,
    /// The timestamp as written, if any.
    timestamp: Option<&'a str>,
}

impl Sample<'_> {
    /// The value of the label `name`, as written.
    fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|label| label.name == name)
            .map(|label| label.value)
    }
}

/// A metric family as one exposition declares it.
#[derive(Debug, Default)]
struct Family<'a> {
    kind: Option<Kind>,
    help: Option<&'a str>,
    samples: Vec<Sample<'a>>,
}

/// One parsed exposition.
#[derive(Debug, Default)]
struct Exposition<'a> {
    families: BTreeMap<&'a str, Family<'a>>,
    dropped: usize,
}

/// Parses one exposition: metadata first, so a sample finds its family even
/// when the `TYPE` line comes later, then the samples.
fn parse_exposition(text: &str) -> Exposition<'_> {
    let mut exposition = Exposition::default();
    for comment in lines(text).filter_map(|line| line.strip_prefix('#')) {
        if !read_metadata(comment, &mut exposition.families) {
            exposition.dropped += 1;
        }
    }
    for line in lines(text).filter(|line| !line.starts_with('#')) {
        if !read_sample(line, &mut exposition.families) {
            exposition.dropped += 1;
        }
    }
    exposition
}

/// The non-blank lines of `text`, without leading blanks.
fn lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .map(|line| line.trim_start_matches(BLANK))
        .filter(|line| !line.is_empty())
}

/// Records a `HELP` or `TYPE` comment (given without its `#`); other
/// comments are ignored. False if the line is malformed or repeats one.
fn read_metadata<'a>(comment: &'a str, families: &mut BTreeMap<&'a str, Family<'a>>) -> bool {
    let (keyword, rest) = split_token(comment);
    if keyword != "HELP" && keyword != "TYPE" {
        return true;
    }
    let (name, rest) = split_token(rest);
    if !is_metric_name(name) {
        return false;
    }
    if keyword == "HELP" {
        if !valid_escapes(rest, b"\\n") {
            return false;
        }
        set_once(&mut families.entry(name).or_default().help, rest)
    } else {
        match Kind::parse(rest.trim_end_matches(BLANK)) {
            Some(kind) => set_once(&mut families.entry(name).or_default().kind, kind),
            None => false,
        }
    }
}

/// Sets `slot` to `value` unless it is set already; false if it was.
fn set_once<T>(slot: &mut Option<T>, value: T) -> bool {
    if slot.is_some() {
        return false;
    }
    *slot = Some(value);
    true
}

/// Splits off the first blank-separated token; the rest has no leading blanks.
fn split_token(text: &str) -> (&str, &str) {
    let text = text.trim_start_matches(BLANK);
    let end = text.find(BLANK).unwrap_or(text.len());
    let (token, rest) = text.split_at(end);
    (token, rest.trim_start_matches(BLANK))
}

/// Parses a sample line into the family it belongs to. False if the line is
/// malformed or does not fit its family's type.
fn read_sample<'a>(line: &'a str, families: &mut BTreeMap<&'a str, Family<'a>>) -> bool {
    let Some(sample) = parse_sample(line) else {
        return false;
    };
    let name = family_of(sample.name, families);
    let family = families.entry(name).or_default();
    let kind = family.kind.unwrap_or(Kind::Untyped);
    if !fits(&sample, &sample.name[name.len()..], kind) {
        return false;
    }
    family.samples.push(sample);
    true
}

/// The family a sample name belongs to, by the exposition's `TYPE` lines.
fn family_of<'a>(name: &'a str, families: &BTreeMap<&'a str, Family<'a>>) -> &'a str {
    if families.contains_key(name) {
        return name;
    }
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix)
            && let Some(family) = families.get(base)
            && family
                .kind
                .is_some_and(|kind| kind.suffixes().contains(&suffix))
        {
            return base;
        }
    }
    name
}

/// Whether a sample, named with `suffix` after its family's name, is valid
/// in a family of type `kind`: histogram buckets need a numeric `le`, summary
/// quantiles a numeric `quantile`.
fn fits(sample: &Sample<'_>, suffix: &str, kind: Kind) -> bool {
    if !kind.suffixes().contains(&suffix) {
        return false;
    }
    let numeric = |label| sample.label(label).is_some_and(is_float);
    match (kind, suffix) {
        (Kind::Histogram, "_bucket") => numeric("le"),
        (Kind::Summary, "") => numeric("quantile"),
        (Kind::Histogram, _) => sample.label("le").is_none_or(is_float),
        (Kind::Summary, _) => sample.label("quantile").is_none_or(is_float),
        _ => true,
    }
}

/// Parses `name{labels} value [timestamp]`.
fn parse_sample(line: &str) -> Option<Sample<'_>> {
    let (name, rest) = line.split_at(name_len(line, true));
    if name.is_empty() {
        return None;
    }
    let trimmed = rest.trim_start_matches(BLANK);
    let (labels, rest) = match trimmed.strip_prefix('{') {
        Some(inner) => parse_labels(inner)?,
        None if trimmed.len() < rest.len() => (Vec::new(), trimmed),
        None => return None,
    };
    let mut tokens = rest.split(BLANK).filter(|token| !token.is_empty());
    let value = tokens.next().filter(|value| is_float(value))?;
    let timestamp = tokens.next();
    let valid_timestamp = timestamp.is_none_or(|time| time.parse::<i64>().is_ok());
    (valid_timestamp && tokens.next().is_none()).then_some(Sample {
        name,
        labels,
        value,
        timestamp,
    })
}

/// Parses the labels after `{` up to and including `}`; returns them and
/// what follows.
fn parse_labels(text: &str) -> Option<(Vec<Label<'_>>, &str)> {
    let mut labels: Vec<Label<'_>> = Vec::new();
    let mut rest = text.trim_start_matches(BLANK);
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            return Some((labels, after));
        }
        let (label, after) = parse_label(rest)?;
        if label.name == "__name__" || labels.iter().any(|seen| seen.name == label.name) {
            return None;
        }
        labels.push(label);
        rest = after.trim_start_matches(BLANK);
        if let Some(after) = rest.strip_prefix(',') {
            rest = after.trim_start_matches(BLANK);
        } else if !rest.starts_with('}') {
            return None;
        }
    }
}

/// Parses one `name="value"`; returns it and what follows.
fn parse_label(text: &str) -> Option<(Label<'_>, &str)> {
    let (name, rest) = text.split_at(name_len(text, false));
    if name.is_empty() {
        return None;
    }
    let rest = rest.trim_start_matches(BLANK).strip_prefix('=')?;
    let rest = rest.trim_start_matches(BLANK).strip_prefix('"')?;
    let end = closing_quote(rest)?;
    let label = Label {
        name: Cow::Borrowed(name),
        value: &rest[..end],
    };
    Some((label, &rest[end + 1..]))
}

/// The index of the quote closing a label value, checking its escapes.
fn closing_quote(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut index = 0;
    while let Some(&byte) = bytes.get(index) {
        match byte {
            b'"' => return Some(index),
            b'\\'
                if bytes
                    .get(index + 1)
                    .is_some_and(|next| b"\\\"n".contains(next)) =>
            {
                index += 2;
            }
            b'\\' => return None,
            _ => index += 1,
        }
    }
    None
}

/// Whether every backslash in `text` starts one of the `allowed` escapes.
fn valid_escapes(text: &str, allowed: &[u8]) -> bool {
    let mut bytes = text.bytes();
    while let Some(byte) = bytes.next() {
        if byte == b'\\' && !bytes.next().is_some_and(|next| allowed.contains(&next)) {
            return false;
        }
    }
    true
}

/// The length of the metric name (`[a-zA-Z_:][a-zA-Z0-9_:]*`) or, without
/// `colons`, label name starting `text`.
fn name_len(text: &str, colons: bool) -> usize {
    let valid = |(index, byte): &(usize, u8)| {
        byte.is_ascii_alphabetic()
            || *byte == b'_'
            || (colons && *byte == b':')
            || (*index > 0 && byte.is_ascii_digit())
    };
    text.bytes().enumerate().take_while(valid).count()
}

/// Whether `name` is a whole, valid metric name.
fn is_metric_name(name: &str) -> bool {
    !name.is_empty() && name_len(name, true) == name.len()
}

/// Whether `text` is a float as Prometheus reads one: decimal or exponent
/// form, `NaN`, `Inf` or `Infinity` (any case; signs only on the infinities).
fn is_float(text: &str) -> bool {
    let signed_nan =
        text.len() > 1 && text.starts_with(['+', '-']) && text[1..].starts_with(['n', 'N']);
    !signed_nan && text.parse::<f64>().is_ok()
}

/// Escapes a label value for the text format.
fn escape_label_value(value: &str) -> Cow<'_, str> {
    if !value.contains(['\\', '"', '\n']) {
        return Cow::Borrowed(value);
    }
    let mut escaped = String::with_capacity(value.len() + 2);
    for c in value.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            c => escaped.push(c),
        }
    }
    Cow::Owned(escaped)
}

/// Renames a sample's own `service` label out of the way of the added one.
fn rename_service(labels: &mut [Label<'_>]) {
    if !labels.iter().any(|label| label.name == SERVICE_LABEL) {
        return;
    }
    let mut name = format!("{EXPORTED_PREFIX}{SERVICE_LABEL}");
    while labels.iter().any(|label| label.name == name) {
        name.insert_str(0, EXPORTED_PREFIX);
    }
    if let Some(label) = labels.iter_mut().find(|label| label.name == SERVICE_LABEL) {
        label.name = Cow::Owned(name);
    }
}

/// A family of the merged exposition.
#[derive(Debug)]
struct MergedFamily<'a> {
    kind: Kind,
    help: Option<&'a str>,
    /// Samples with the index of the service they came from.
    samples: Vec<(usize, Sample<'a>)>,
}

/// Families merged so far.
#[derive(Debug, Default)]
struct Merger<'a> {
    families: BTreeMap<&'a str, MergedFamily<'a>>,
    /// Which family each sample name belongs to.
    owners: HashMap<String, &'a str>,
    dropped: usize,
    /// The expected length of the output.
    size_hint: usize,
}

impl<'a> Merger<'a> {
    /// Adds one service's family, unless it conflicts with an earlier one.
    fn add(&mut self, service: usize, service_len: usize, name: &'a str, family: Family<'a>) {
        let kind = family.kind.unwrap_or(Kind::Untyped);
        if !self.claim(name, kind) {
            self.dropped += family.samples.len();
            return;
        }
        let merged = self.families.entry(name).or_insert_with(|| MergedFamily {
            kind,
            help: None,
            samples: Vec::new(),
        });
        merged.help = merged.help.or(family.help);
        self.size_hint += family.samples.len() * (service_len + SERVICE_LABEL.len() + 5);
        merged
            .samples
            .extend(family.samples.into_iter().map(|mut sample| {
                rename_service(&mut sample.labels);
                (service, sample)
            }));
    }

    /// Whether a family `name` of type `kind` can join the output: same type
    /// as a family already there, or a new family whose sample names no
    /// other family uses (which then become its own).
    fn claim(&mut self, name: &'a str, kind: Kind) -> bool {
        if let Some(existing) = self.families.get(name) {
            return existing.kind == kind;
        }
        let sample_names = kind
            .suffixes()
            .iter()
            .map(|suffix| format!("{name}{suffix}"));
        let sample_names: Vec<String> = sample_names.collect();
        if sample_names
            .iter()
            .any(|sample| self.owners.contains_key(sample))
        {
            return false;
        }
        for sample in sample_names {
            self.owners.insert(sample, name);
        }
        true
    }

    /// Writes the merged exposition.
    fn render(self, services: &[Cow<'_, str>]) -> Merged {
        let mut text = String::with_capacity(self.size_hint);
        for (name, family) in &self.families {
            write_family(&mut text, name, family, services);
        }
        Merged {
            text,
            dropped_samples: self.dropped,
        }
    }
}

/// Writes one family: `HELP`, `TYPE`, then its samples.
fn write_family(
    out: &mut String,
    name: &str,
    family: &MergedFamily<'_>,
    services: &[Cow<'_, str>],
) {
    if let Some(help) = family.help {
        out.push_str("# HELP ");
        out.push_str(name);
        if !help.is_empty() {
            out.push(' ');
            out.push_str(help);
        }
        out.push('\n');
    }
    out.push_str("# TYPE ");
    out.push_str(name);
    out.push(' ');
    out.push_str(family.kind.as_str());
    out.push('\n');
    for (service, sample) in &family.samples {
        let service = services
            .get(*service)
            .map_or("", |service| service.as_ref());
        write_sample(out, service, sample);
    }
}

/// Writes one sample line with the (escaped) `service` label first.
fn write_sample(out: &mut String, service: &str, sample: &Sample<'_>) {
    out.push_str(sample.name);
    out.push('{');
    out.push_str(SERVICE_LABEL);
    out.push_str("=\"");
    out.push_str(service);
    out.push('"');
    for label in &sample.labels {
        out.push(',');
        out.push_str(&label.name);
        out.push_str("=\"");
        out.push_str(label.value);
        out.push('"');
    }
    out.push_str("} ");
    out.push_str(sample.value);
    if let Some(timestamp) = sample.timestamp {
        out.push(' ');
        out.push_str(timestamp);
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::io::Write as _;
    use std::process::{Command, Stdio};

    use super::*;

    /// What the session service exposes, as the `prometheus` crate's
    /// `TextEncoder` writes it for opentelemetry-prometheus.
    const SESSION: &str = r#"# HELP chatbot_pool_connections Connections held by each pool
# TYPE chatbot_pool_connections gauge
chatbot_pool_connections{pool="redis",state="idle"} 4
chatbot_pool_connections{pool="redis",state="in_use"} 1
# HELP chatbot_sessions_expired_total Sessions removed after their time to live
# TYPE chatbot_sessions_expired_total counter
chatbot_sessions_expired_total 12
# HELP http_request_duration_seconds Duration of HTTP requests in seconds
# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{http_request_method="GET",http_response_status_code="200",http_route="/readyz",le="0.005"} 40
http_request_duration_seconds_bucket{http_request_method="GET",http_response_status_code="200",http_route="/readyz",le="0.01"} 41
http_request_duration_seconds_bucket{http_request_method="GET",http_response_status_code="200",http_route="/readyz",le="0.025"} 42
http_request_duration_seconds_bucket{http_request_method="GET",http_response_status_code="200",http_route="/readyz",le="0.1"} 42
http_request_duration_seconds_bucket{http_request_method="GET",http_response_status_code="200",http_route="/readyz",le="1"} 42
http_request_duration_seconds_bucket{http_request_method="GET",http_response_status_code="200",http_route="/readyz",le="+Inf"} 42
http_request_duration_seconds_sum{http_request_method="GET",http_response_status_code="200",http_route="/readyz"} 0.084
http_request_duration_seconds_count{http_request_method="GET",http_response_status_code="200",http_route="/readyz"} 42
# HELP target_info Target metadata
# TYPE target_info gauge
target_info{service_name="session",telemetry_sdk_language="rust",telemetry_sdk_name="opentelemetry",telemetry_sdk_version="0.30.0"} 1
"#;

    /// What the chat service exposes: counters, two histogram series, a
    /// label value full of escapes and separators, a sample with its own
    /// `service` label, special values, a timestamp, comments, blank lines.
    const CHAT: &str = r#"# HELP chatbot_errors_total Total number of errors
# TYPE chatbot_errors_total counter
chatbot_errors_total{error_type="llm_timeout"} 2
# HELP chatbot_llm_temperature_ratio Sampling temperature of the model
# TYPE chatbot_llm_temperature_ratio gauge
chatbot_llm_temperature_ratio{model="tiny"} NaN
chatbot_llm_temperature_ratio{model="huge"} +Inf
chatbot_llm_temperature_ratio{model="cold"} -Inf
chatbot_llm_temperature_ratio{model="exp"} 1.5e-07 1700000000000
# a comment that is not metadata

# HELP chatbot_messages_total Total number of processed messages
# TYPE chatbot_messages_total counter
chatbot_messages_total{message_type="question",urgency="high"} 5
chatbot_messages_total{message_type="say \"hi\", {then} \\ go\nnow",urgency="low"} 1
# HELP chatbot_pool_connections Connections held by each pool
# TYPE chatbot_pool_connections gauge
chatbot_pool_connections{pool="postgres",service="db-main",state="idle"} 2
# HELP http_request_duration_seconds Duration of HTTP requests in seconds
# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{http_request_method="POST",http_response_status_code="200",http_route="/chat",le="0.005"} 0
http_request_duration_seconds_bucket{http_request_method="POST",http_response_status_code="200",http_route="/chat",le="0.01"} 0
http_request_duration_seconds_bucket{http_request_method="POST",http_response_status_code="200",http_route="/chat",le="0.025"} 1
http_request_duration_seconds_bucket{http_request_method="POST",http_response_status_code="200",http_route="/chat",le="0.1"} 3
http_request_duration_seconds_bucket{http_request_method="POST",http_response_status_code="200",http_route="/chat",le="1"} 7
http_request_duration_seconds_bucket{http_request_method="POST",http_response_status_code="200",http_route="/chat",le="+Inf"} 8
http_request_duration_seconds_sum{http_request_method="POST",http_response_status_code="200",http_route="/chat"} 4.25
http_request_duration_seconds_count{http_request_method="POST",http_response_status_code="200",http_route="/chat"} 8
http_request_duration_seconds_bucket{http_request_method="GET",http_response_status_code="200",http_route="/readyz",le="0.005"} 9
http_request_duration_seconds_bucket{http_request_method="GET",http_response_status_code="200",http_route="/readyz",le="0.01"} 9
http_request_duration_seconds_bucket{http_request_method="GET",http_response_status_code="200",http_route="/readyz",le="0.025"} 9
http_request_duration_seconds_bucket{http_request_method="GET",http_response_status_code="200",http_route="/readyz",le="0.1"} 9
http_request_duration_seconds_bucket{http_request_method="GET",http_response_status_code="200",http_route="/readyz",le="1"} 9
http_request_duration_seconds_bucket{http_request_method="GET",http_response_status_code="200",http_route="/readyz",le="+Inf"} 9
http_request_duration_seconds_sum{http_request_method="GET",http_response_status_code="200",http_route="/readyz"} 0.009
http_request_duration_seconds_count{http_request_method="GET",http_response_status_code="200",http_route="/readyz"} 9
# HELP target_info Target metadata
# TYPE target_info gauge
target_info{service_name="chat",telemetry_sdk_language="rust",telemetry_sdk_name="opentelemetry",telemetry_sdk_version="0.30.0"} 1
"#;

    fn inputs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(service, text)| (service.to_string(), text.to_string()))
            .collect()
    }

    /// Merges the two realistic expositions, session first as given.
    fn merged() -> Merged {
        merge(&inputs(&[("session", SESSION), ("chat", CHAT)]))
    }

    /// The number of sample lines in an exposition.
    fn sample_count(text: &str) -> usize {
        lines(text).filter(|line| !line.starts_with('#')).count()
    }

    /// The family names of the `TYPE` lines, in order.
    fn type_names(text: &str) -> Vec<&str> {
        text.lines()
            .filter_map(|line| line.strip_prefix("# TYPE "))
            .map(|rest| split_token(rest).0)
            .collect()
    }

    /// The output of `promtool check metrics` run on `text`: status
    /// success, stdout and stderr. None when promtool is not installed.
    fn promtool(text: &str, tag: &str) -> Option<(bool, String, String)> {
        let path = std::env::temp_dir().join(format!("federate-{}-{tag}.prom", std::process::id()));
        std::fs::File::create(&path)
            .and_then(|mut file| file.write_all(text.as_bytes()))
            .unwrap();
        let output = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::from(std::fs::File::open(&path).unwrap()))
            .output();
        std::fs::remove_file(&path).unwrap();
        let output = match output {
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return None,
            other => other.unwrap(),
        };
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        Some((output.status.success(), stdout, stderr))
    }

    #[test]
    fn every_sample_is_labelled_with_its_service() {
        let merged = merged();
        assert_eq!(merged.dropped_samples, 0, "{}", merged.text);
        assert_eq!(
            sample_count(&merged.text),
            sample_count(SESSION) + sample_count(CHAT)
        );
        for line in merged.text.lines().filter(|line| !line.starts_with('#')) {
            assert!(
                line.contains("{service=\"session\"") || line.contains("{service=\"chat\""),
                "{line}"
            );
        }
        assert!(merged.text.contains(
            "target_info{service=\"session\",service_name=\"session\",telemetry_sdk_language=\"rust\""
        ));
        assert!(
            merged
                .text
                .contains("chatbot_sessions_expired_total{service=\"session\"} 12\n")
        );
    }

    #[test]
    fn families_are_sorted_deduplicated_and_contiguous() {
        let text = merged().text;
        let names = type_names(&text);
        let expected = [
            "chatbot_errors_total",
            "chatbot_llm_temperature_ratio",
            "chatbot_messages_total",
            "chatbot_pool_connections",
            "chatbot_sessions_expired_total",
            "http_request_duration_seconds",
            "target_info",
        ];
        assert_eq!(names, expected);
        for name in expected {
            assert_eq!(
                text.matches(&format!("# HELP {name} ")).count(),
                1,
                "{name}"
            );
        }
        // Each family's lines form one block: once a family's block ends,
        // no later line belongs to it.
        let mut finished: Vec<&str> = Vec::new();
        let mut current = "";
        for line in text.lines() {
            let name = match line.strip_prefix('#') {
                Some(comment) => split_token(split_token(comment).1).0,
                None => {
                    let name = &line[..name_len(line, true)];
                    expected
                        .iter()
                        .copied()
                        .find(|family| name.starts_with(family))
                        .unwrap()
                }
            };
            if name != current {
                assert!(!finished.contains(&name), "{name} is split:\n{text}");
                finished.push(current);
                current = name;
            }
        }
    }

    #[test]
    fn samples_are_ordered_by_service_then_input() {
        let text = merged().text;
        let histogram: Vec<&str> = text
            .lines()
            .filter(|line| line.starts_with("http_request_duration_seconds_"))
            .collect();
        assert_eq!(histogram.len(), 24);
        assert!(
            histogram[..16]
                .iter()
                .all(|line| line.contains("service=\"chat\""))
        );
        assert!(
            histogram[16..]
                .iter()
                .all(|line| line.contains("service=\"session\""))
        );
        assert!(histogram[0].contains("http_route=\"/chat\",le=\"0.005\"} 0"));
        assert!(histogram[5].contains("le=\"+Inf\"} 8"));
        assert!(histogram[6].starts_with("http_request_duration_seconds_sum{"));
        assert!(histogram[21].ends_with("le=\"+Inf\"} 42"));
        assert!(
            histogram[23].starts_with("http_request_duration_seconds_count{service=\"session\"")
        );
        // The result does not depend on the order services are given in.
        let reversed = merge(&inputs(&[("chat", CHAT), ("session", SESSION)]));
        assert_eq!(reversed.text, text);
    }

    #[test]
    fn values_timestamps_and_escapes_are_kept_verbatim() {
        let text = merged().text;
        for expected in [
            "chatbot_llm_temperature_ratio{service=\"chat\",model=\"tiny\"} NaN\n",
            "chatbot_llm_temperature_ratio{service=\"chat\",model=\"huge\"} +Inf\n",
            "chatbot_llm_temperature_ratio{service=\"chat\",model=\"cold\"} -Inf\n",
            "chatbot_llm_temperature_ratio{service=\"chat\",model=\"exp\"} 1.5e-07 1700000000000\n",
            r#"chatbot_messages_total{service="chat",message_type="say \"hi\", {then} \\ go\nnow",urgency="low"} 1"#,
        ] {
            assert!(text.contains(expected), "{expected} missing from\n{text}");
        }
        assert!(!text.contains("a comment"));
        assert!(!text.contains("\n\n"));
    }

    #[test]
    fn an_existing_service_label_is_renamed() {
        let text = merged().text;
        assert!(text.contains(
            "chatbot_pool_connections{service=\"chat\",pool=\"postgres\",exported_service=\"db-main\",state=\"idle\"} 2\n"
        ));
        let taken = "# TYPE up gauge\nup{service=\"a\",exported_service=\"b\"} 1\n";
        let merged = merge(&inputs(&[("web", taken)]));
        assert_eq!(
            merged.text,
            "# TYPE up gauge\nup{service=\"web\",exported_exported_service=\"a\",exported_service=\"b\"} 1\n"
        );
    }

    #[test]
    fn service_names_are_escaped() {
        let merged = merge(&inputs(&[("odd \"one\"\\", "up 1\n")]));
        assert_eq!(
            merged.text,
            "# TYPE up untyped\nup{service=\"odd \\\"one\\\"\\\\\"} 1\n"
        );
    }

    #[test]
    fn a_conflicting_type_keeps_the_first_service_family() {
        let first = "# HELP queue_depth Jobs waiting\n# TYPE queue_depth gauge\nqueue_depth 3\n";
        let second = "# HELP queue_depth Jobs seen\n# TYPE queue_depth counter\nqueue_depth 7\nqueue_depth{q=\"x\"} 8\n";
        let merged = merge(&inputs(&[("zeta", second), ("alpha", first)]));
        assert_eq!(
            merged.text,
            "# HELP queue_depth Jobs waiting\n# TYPE queue_depth gauge\nqueue_depth{service=\"alpha\"} 3\n"
        );
        assert_eq!(merged.dropped_samples, 2);
    }

    #[test]
    fn clashing_sample_names_keep_the_first_family() {
        let histogram =
            "# TYPE rpc histogram\nrpc_bucket{le=\"+Inf\"} 1\nrpc_sum 0.5\nrpc_count 1\n";
        let counter = "# TYPE rpc_count counter\nrpc_count 4\n";
        let merged = merge(&inputs(&[("a", histogram), ("b", counter)]));
        assert_eq!(type_names(&merged.text), ["rpc"]);
        assert_eq!(merged.dropped_samples, 1);
        let merged = merge(&inputs(&[("a", counter), ("b", histogram)]));
        assert_eq!(type_names(&merged.text), ["rpc_count"]);
        assert_eq!(merged.dropped_samples, 3);
    }

    #[test]
    fn samples_find_their_family_by_type_lines() {
        let text = "\
rpc_seconds_sum 1.5
rpc_seconds_count 3
rpc_seconds{quantile=\"0.5\"} 0.25
# TYPE rpc_seconds summary
loose_count 2
loose_bucket{le=\"1\"} 2
";
        let merged = merge(&inputs(&[("svc", text)]));
        assert_eq!(merged.dropped_samples, 0);
        assert_eq!(
            merged.text,
            "\
# TYPE loose_bucket untyped
loose_bucket{service=\"svc\",le=\"1\"} 2
# TYPE loose_count untyped
loose_count{service=\"svc\"} 2
# TYPE rpc_seconds summary
rpc_seconds_sum{service=\"svc\"} 1.5
rpc_seconds_count{service=\"svc\"} 3
rpc_seconds{service=\"svc\",quantile=\"0.5\"} 0.25
"
        );
    }

    #[test]
    fn loose_spacing_is_accepted() {
        let text = "  \t\n#   TYPE  x\tgauge \n x { a = \"1\" , b=\"2\", }\t5  17\n";
        let merged = merge(&inputs(&[("s", text)]));
        assert_eq!(merged.dropped_samples, 0);
        assert_eq!(
            merged.text,
            "# TYPE x gauge\nx{service=\"s\",a=\"1\",b=\"2\"} 5 17\n"
        );
    }

    #[test]
    fn garbage_lines_are_dropped_and_counted() {
        let text = "\
# TYPE good gauge
# TYPE good counter
# TYPE bad sometype
# TYPE 1bad gauge
# HELP good fine
# HELP good again
# HELP odd bad escape \\q
good 1
good{a=\"unterminated} 1
good{a=\"bad escape \\q\"} 1
good{a=\"1\",a=\"2\"} 1
good{__name__=\"x\"} 1
good{a=\"1\"b=\"2\"} 1
good{a=\"1\"
good{,} 1
good{1a=\"1\"} 1
good
good one
good 1 2 3
good 1 1.5
good +NaN
good-x 1
{a=\"1\"} 1
9good 1
good\u{00e9} 1
# TYPE hist histogram
hist 1
hist_bucket 1
hist_bucket{le=\"high\"} 1
# TYPE sum summary
sum 1
sum{quantile=\"x\"} 1
";
        let merged = merge(&inputs(&[("s", text)]));
        assert_eq!(merged.dropped_samples, 27, "{}", merged.text);
        assert_eq!(
            merged.text,
            "# HELP good fine\n# TYPE good gauge\ngood{service=\"s\"} 1\n\
             # TYPE hist histogram\n# TYPE sum summary\n"
        );
    }

    #[test]
    fn empty_input_gives_empty_output() {
        assert_eq!(merge(&[]), Merged::default());
        assert_eq!(
            merge(&inputs(&[("s", ""), ("t", "\n\n# just a comment\n")])),
            Merged::default()
        );
    }

    #[test]
    fn truncated_input_never_panics() {
        for cut in (0..=CHAT.len()).filter(|&cut| CHAT.is_char_boundary(cut)) {
            let merged = merge(&inputs(&[("chat", &CHAT[..cut]), ("session", SESSION)]));
            // Every session sample is either written or counted as dropped
            // (a damaged chat family may claim its name first).
            let written = sample_count(&merged.text);
            assert!(
                written + merged.dropped_samples >= sample_count(SESSION),
                "cut {cut}"
            );
        }
    }

    #[test]
    fn merged_output_passes_promtool() {
        for (tag, input) in [("session", SESSION), ("chat", CHAT)] {
            let Some((ok, stdout, stderr)) = promtool(input, tag) else {
                panic!("promtool is not installed: run scripts/setup.sh");
            };
            assert!(
                ok && stdout.is_empty() && stderr.is_empty(),
                "{tag}: {stdout}{stderr}"
            );
        }
        let merged = merged();
        let (ok, stdout, stderr) = promtool(&merged.text, "merged").unwrap();
        assert!(ok, "{stdout}{stderr}\n{}", merged.text);
        assert!(stdout.is_empty() && stderr.is_empty(), "{stdout}{stderr}");
    }

    #[test]
    fn a_captured_exposition_merges_and_passes_promtool() {
        // Captured from `chatbot_common::telemetry::render_metrics` (the
        // opentelemetry-prometheus exporter plus the process collector).
        let captured = include_str!("../tests/fixtures/federate-session.prom");
        let merged = merge(&inputs(&[("session", captured), ("chat", CHAT)]));
        assert_eq!(merged.dropped_samples, 0);
        assert_eq!(
            sample_count(&merged.text),
            sample_count(captured) + sample_count(CHAT)
        );
        assert!(merged.text.contains(
            r#"chatbot_messages_total{service="session",message_type="say \"hi\", {x}\\\n",exported_service="inner"} 3"#
        ));
        let Some((ok, stdout, stderr)) = promtool(&merged.text, "captured") else {
            panic!("promtool is not installed: run scripts/setup.sh");
        };
        assert!(
            ok && stdout.is_empty() && stderr.is_empty(),
            "{stdout}{stderr}"
        );
    }

    #[test]
    fn merged_damaged_input_still_parses_in_promtool() {
        let cuts = (0..=CHAT.len())
            .step_by(97)
            .filter(|&cut| CHAT.is_char_boundary(cut));
        for cut in cuts {
            let merged = merge(&inputs(&[("chat", &CHAT[..cut]), ("session", SESSION)]));
            let Some((_, stdout, stderr)) = promtool(&merged.text, &format!("cut{cut}")) else {
                panic!("promtool is not installed: run scripts/setup.sh");
            };
            // Lint findings (e.g. a truncated counter name) are fine here;
            // a parse error is not.
            let out = format!("{stdout}{stderr}");
            assert!(
                !out.contains("error while linting"),
                "cut {cut}: {out}\n{}",
                merged.text
            );
        }
    }
}
