//! The deterministic replies: a pure function of the model name, the
//! messages and the configured reply length.
//!
//! The rule (a public contract that tests rely on) is spelled out in the
//! crate documentation; [`chat_reply`] and [`generate_reply`] implement it
//! and can be called by tests to compute the exact expected text.

/// One input message, as the simulator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimMessage {
    /// `system`, `user`, `assistant` or `tool`.
    pub role: String,
    /// The text (an absent content counts as empty).
    pub content: String,
}

impl SimMessage {
    /// A message with `role` and `content`.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// How many characters of the first earlier user message are quoted.
pub const QUOTE_CHARS: usize = 60;

/// Tokens counted for each input message on top of its words.
pub const PROMPT_TOKENS_PER_MESSAGE: u64 = 4;

/// The words filler is drawn from.
const FILLER: [&str; 32] = [
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet",
    "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango",
    "uniform", "victor", "whiskey", "xray", "yankee", "zulu", "amber", "cobalt", "ember", "jade",
    "onyx", "slate",
];

/// Runs of whitespace collapsed to one space, and trimmed.
pub fn normalize(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The reply text to a chat: see the crate documentation for the rule.
pub fn chat_reply(model: &str, messages: &[SimMessage], reply_tokens: usize) -> String {
    let words = reply_words(model, messages, reply_tokens);
    words.join(" ")
}

/// The reply text to `/api/generate`: the chat rule applied to the messages
/// `[system (if any), user: prompt]`.
pub fn generate_reply(
    model: &str,
    system: Option<&str>,
    prompt: &str,
    reply_tokens: usize,
) -> String {
    chat_reply(model, &generate_messages(system, prompt), reply_tokens)
}

/// The messages `/api/generate` is treated as.
pub fn generate_messages(system: Option<&str>, prompt: &str) -> Vec<SimMessage> {
    let mut messages = Vec::with_capacity(2);
    if let Some(system) = system.filter(|s| !s.is_empty()) {
        messages.push(SimMessage::new("system", system));
    }
    messages.push(SimMessage::new("user", prompt));
    messages
}

/// The reply as words (tokens without their separating spaces).
pub fn reply_words(model: &str, messages: &[SimMessage], reply_tokens: usize) -> Vec<String> {
    let mut words: Vec<String> = base_text(messages)
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let mut rng = SplitMix64(input_hash(model, messages));
    while words.len() < reply_tokens {
        let pick = usize::try_from(rng.next() % FILLER.len() as u64).unwrap_or(0);
        words.push(FILLER.get(pick).copied().unwrap_or("echo").to_owned());
    }
    words
}

/// The streamed tokens of `text`: its whitespace-separated words, each but
/// the first with its leading space, so they concatenate back to the words
/// joined by single spaces.
pub fn tokens(text: &str) -> Vec<String> {
    text.split_whitespace()
        .enumerate()
        .map(|(i, w)| {
            if i == 0 {
                w.to_owned()
            } else {
                format!(" {w}")
            }
        })
        .collect()
}

/// `prompt_eval_count`: the words of every message plus
/// [`PROMPT_TOKENS_PER_MESSAGE`] for each message.
pub fn prompt_eval_count(messages: &[SimMessage]) -> u64 {
    messages
        .iter()
        .map(|m| m.content.split_whitespace().count() as u64 + PROMPT_TOKENS_PER_MESSAGE)
        .sum()
}

/// Deterministic token ids for the `context` of `/api/generate`.
pub fn context_ids(prompt: &str, reply: &str) -> Vec<u64> {
    prompt
        .split_whitespace()
        .chain(reply.split_whitespace())
        .map(|w| fnv1a(FNV_OFFSET, w.as_bytes()) % 128_000 + 1)
        .collect()
}

/// The text before filler: `Echo: <target>. Context: <n> earlier messages`
/// and, when there is an earlier user message, ` (first: "<quote>")`.
fn base_text(messages: &[SimMessage]) -> String {
    let target = messages
        .iter()
        .rposition(|m| m.role == "user")
        .or_else(|| messages.len().checked_sub(1));
    let Some(target) = target else {
        return String::new();
    };
    let earlier = messages.get(..target).unwrap_or_default();
    let count = earlier.iter().filter(|m| m.role != "system").count();
    let echo = messages
        .get(target)
        .map(|m| normalize(&m.content))
        .unwrap_or_default();
    let mut text = format!("Echo: {echo}. Context: {count} earlier messages");
    if let Some(first) = earlier.iter().find(|m| m.role == "user") {
        let quote: String = normalize(&first.content)
            .chars()
            .take(QUOTE_CHARS)
            .collect();
        text.push_str(&format!(" (first: \"{}\")", quote.trim_end()));
    }
    text
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    hash
}

/// A stable hash of the model and messages (FNV-1a, so it is the same on every
/// platform and Rust version).
pub fn input_hash(model: &str, messages: &[SimMessage]) -> u64 {
    let mut hash = fnv1a(FNV_OFFSET, model.as_bytes());
    for m in messages {
        hash = fnv1a(hash, &[0x1e]);
        hash = fnv1a(hash, m.role.as_bytes());
        hash = fnv1a(hash, &[0x1f]);
        hash = fnv1a(hash, m.content.as_bytes());
    }
    hash
}

/// A stable 64-hex-digit digest derived from `text` (for model digests).
pub fn hex_digest(text: &str) -> String {
    let mut rng = SplitMix64(fnv1a(FNV_OFFSET, text.as_bytes()));
    (0..4).map(|_| format!("{:016x}", rng.next())).collect()
}

/// The SplitMix64 generator: tiny, seedable and the same everywhere.
pub(crate) struct SplitMix64(pub(crate) u64);

impl SplitMix64 {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msgs(list: &[(&str, &str)]) -> Vec<SimMessage> {
        list.iter().map(|(r, c)| SimMessage::new(*r, *c)).collect()
    }

    #[test]
    fn single_message_is_echoed_and_padded() {
        let m = msgs(&[("system", "be nice"), ("user", "hello   there\nfriend")]);
        let reply = chat_reply("llama3.2:1b", &m, 12);
        assert!(reply.starts_with("Echo: hello there friend. Context: 0 earlier messages "));
        assert_eq!(reply.split(' ').count(), 12);
        assert_eq!(reply, chat_reply("llama3.2:1b", &m, 12));
        assert_ne!(reply, chat_reply("qwen2.5:0.5b", &m, 12));
    }

    #[test]
    fn history_is_counted_and_first_user_message_quoted() {
        let long = "x".repeat(70);
        let m = msgs(&[
            ("system", "s"),
            ("user", &long),
            ("assistant", "a1"),
            ("user", "second"),
            ("assistant", "a2"),
            ("user", "third"),
        ]);
        let reply = chat_reply("m", &m, 0);
        assert_eq!(
            reply,
            format!(
                "Echo: third. Context: 4 earlier messages (first: \"{}\")",
                "x".repeat(60)
            )
        );
    }

    #[test]
    fn tokens_concatenate_to_text() {
        let text = "Echo: a. Context: 0 earlier messages";
        assert_eq!(tokens(text).concat(), text);
        assert_eq!(tokens(text).len(), 6);
    }

    #[test]
    fn prompt_count_is_words_plus_four_per_message() {
        let m = msgs(&[("system", "a b"), ("user", "c d e")]);
        assert_eq!(prompt_eval_count(&m), 5 + 8);
    }

    #[test]
    fn generate_uses_the_same_rule() {
        assert_eq!(
            generate_reply("m", Some("sys"), "why?", 0),
            "Echo: why?. Context: 0 earlier messages"
        );
    }
}
