//! Rule-based classification of a message's type and urgency.
//!
//! The rules come from `[chat.classification]` and are compiled once at
//! start-up into lowercase keyword lists. A keyword made of letters and digits
//! only matches whole words (`hi` does not match `this`); one with spaces or
//! punctuation (`not working`, `?`) matches anywhere.

use chatbot_common::api::{MessageType, Urgency};
use chatbot_common::config::ClassificationSettings;

/// A compiled keyword.
#[derive(Debug, Clone)]
struct Keyword {
    text: String,
    whole_word: bool,
}

impl Keyword {
    fn new(raw: &str) -> Option<Self> {
        let text = raw.trim().to_lowercase();
        if text.is_empty() {
            return None;
        }
        let whole_word = text.chars().all(char::is_alphanumeric);
        Some(Self { text, whole_word })
    }

    fn found_in(&self, lowered: &str) -> bool {
        if !self.whole_word {
            return lowered.contains(&self.text);
        }
        lowered
            .split(|c: char| !c.is_alphanumeric())
            .any(|word| word == self.text)
    }
}

fn compile(words: &[String]) -> Vec<Keyword> {
    words.iter().filter_map(|w| Keyword::new(w)).collect()
}

/// The compiled rules.
#[derive(Debug, Clone)]
pub struct Classifier {
    types: Vec<(MessageType, Vec<Keyword>)>,
    high: Vec<Keyword>,
    low: Vec<Keyword>,
}

/// A rule named a type outside the fixed set.
#[derive(Debug, thiserror::Error)]
#[error(
    "chat.classification.types: unknown type '{0}' (expected one of question, complaint, request, greeting, feedback)"
)]
pub struct UnknownType(String);

impl Classifier {
    /// Compiles the configured rules.
    pub fn new(settings: &ClassificationSettings) -> Result<Self, UnknownType> {
        let types = settings
            .types
            .iter()
            .map(|rule| {
                MessageType::parse(&rule.kind.to_lowercase())
                    .filter(|t| *t != MessageType::Other)
                    .map(|t| (t, compile(&rule.keywords)))
                    .ok_or_else(|| UnknownType(rule.kind.clone()))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            types,
            high: compile(&settings.high_urgency),
            low: compile(&settings.low_urgency),
        })
    }

    /// The type and urgency of `message`.
    pub fn classify(&self, message: &str) -> (MessageType, Urgency) {
        let lowered = message.to_lowercase();
        let any = |words: &[Keyword]| words.iter().any(|k| k.found_in(&lowered));
        let kind = self
            .types
            .iter()
            .find(|(_, words)| any(words))
            .map_or(MessageType::Other, |(t, _)| *t);
        let urgency = if any(&self.high) {
            Urgency::High
        } else if any(&self.low) {
            Urgency::Low
        } else {
            Urgency::Normal
        };
        (kind, urgency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chatbot_common::config::Settings;

    fn classifier() -> Classifier {
        Classifier::new(&Settings::default().chat.classification)
            .unwrap_or_else(|e| panic!("default rules must compile: {e}"))
    }

    #[test]
    fn default_rules_classify_typical_messages() {
        let c = classifier();
        assert_eq!(
            c.classify("Hello there"),
            (MessageType::Greeting, Urgency::Normal)
        );
        assert_eq!(
            c.classify("My order is broken, this is URGENT"),
            (MessageType::Complaint, Urgency::High)
        );
        assert_eq!(
            c.classify("How do I reset my password?").0,
            MessageType::Question
        );
        assert_eq!(
            c.classify("Could you send the invoice").0,
            MessageType::Request
        );
        assert_eq!(
            c.classify("no rush, just a thought: great job").1,
            Urgency::Low
        );
        assert_eq!(c.classify("Thanks").0, MessageType::Other);
    }

    #[test]
    fn single_words_match_whole_words_only() {
        let c = classifier();
        assert_eq!(
            c.classify("this thing").0,
            MessageType::Other,
            "'hi' is not in 'this'"
        );
        assert_eq!(c.classify("the system is down!").1, Urgency::High);
        assert_eq!(c.classify("downtime report").1, Urgency::Normal);
    }

    #[test]
    fn unknown_types_are_rejected() {
        let mut settings = Settings::default().chat.classification;
        settings.types[0].kind = "rant".into();
        assert!(Classifier::new(&settings).is_err());
    }
}
