//! Fitting a conversation into the context window: a prompt longer than the
//! budget loses its oldest turns first (the system prompt and the last
//! message stay), and if the remaining messages are still too long, the
//! longest loses its beginning. A request is never refused for its length.

/// One message of the conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// `system`, `user`, `assistant` or `tool`.
    pub role: String,
    /// The text.
    pub content: String,
}

impl Message {
    /// A message from `role`.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// How the conversation was made to fit.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Cut {
    /// Whole messages left out, oldest first.
    pub dropped_messages: usize,
    /// Characters cut from the start of a message.
    pub truncated_chars: usize,
}

impl Cut {
    /// Whether anything was left out.
    pub fn any(&self) -> bool {
        self.dropped_messages > 0 || self.truncated_chars > 0
    }
}

/// Shortens `messages` until `count` (the prompt's length in tokens, chat
/// template included) is at most `budget`.
pub fn fit(
    messages: &mut Vec<Message>,
    budget: usize,
    mut count: impl FnMut(&[Message]) -> usize,
) -> Cut {
    let mut cut = Cut::default();
    while count(messages) > budget {
        match oldest_turn(messages) {
            Some(index) => {
                messages.remove(index);
                cut.dropped_messages += 1;
            }
            None => {
                cut.truncated_chars += truncate_longest(messages, budget, &mut count);
                break;
            }
        }
    }
    cut
}

/// The oldest message that may go: not a system message, not the last one.
fn oldest_turn(messages: &[Message]) -> Option<usize> {
    let last = messages.len().checked_sub(1)?;
    messages[..last].iter().position(|m| m.role != "system")
}

/// Cuts the beginning of the longest messages (the end of a message is what
/// the answer depends on most) until the prompt fits or they are empty;
/// returns the characters cut.
fn truncate_longest(
    messages: &mut [Message],
    budget: usize,
    count: &mut impl FnMut(&[Message]) -> usize,
) -> usize {
    let mut cut_chars = 0;
    while count(messages) > budget {
        let Some(longest) = (0..messages.len())
            .filter(|&i| !messages[i].content.is_empty())
            .max_by_key(|&i| messages[i].content.len())
        else {
            // Nothing left to cut: the template alone exceeds the budget.
            break;
        };
        cut_chars += keep_the_end_that_fits(messages, longest, budget, count);
    }
    cut_chars
}

/// Finds by bisection the longest end of message `index` that fits (or
/// empties it); returns the characters cut.
fn keep_the_end_that_fits(
    messages: &mut [Message],
    index: usize,
    budget: usize,
    count: &mut impl FnMut(&[Message]) -> usize,
) -> usize {
    let original = std::mem::take(&mut messages[index].content);
    let starts: Vec<usize> = original.char_indices().map(|(i, _)| i).collect();
    // Keep `starts.len() - lo` characters: `lo` characters cut at least.
    let (mut lo, mut hi) = (1, starts.len());
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        messages[index].content = original[starts[mid]..].to_owned();
        if count(messages) <= budget {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    messages[index].content = starts
        .get(lo)
        .map_or_else(String::new, |&at| original[at..].to_owned());
    lo
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One token per character plus 4 per message: a template's overhead.
    fn chars(messages: &[Message]) -> usize {
        messages.iter().map(|m| m.content.chars().count() + 4).sum()
    }

    fn conversation() -> Vec<Message> {
        vec![
            Message::new("system", "be brief"),
            Message::new("user", "first question"),
            Message::new("assistant", "first answer"),
            Message::new("user", "second question"),
        ]
    }

    #[test]
    fn a_prompt_that_fits_is_left_alone() {
        let mut messages = conversation();
        let cut = fit(&mut messages, 1000, chars);
        assert!(!cut.any());
        assert_eq!(messages, conversation());
    }

    #[test]
    fn oldest_turns_go_first_keeping_the_system_prompt_and_the_question() {
        let mut messages = conversation();
        // system 12 + last 19 = 31; the answer's 16 more would not fit.
        let cut = fit(&mut messages, 40, chars);
        assert_eq!(cut.dropped_messages, 2);
        assert_eq!(
            messages,
            vec![
                Message::new("system", "be brief"),
                Message::new("user", "second question"),
            ]
        );
    }

    #[test]
    fn a_too_long_last_message_keeps_its_end() {
        let mut messages = vec![
            Message::new("system", "be brief"),
            Message::new("user", format!("{}the question?", "blah ".repeat(1000))),
        ];
        let cut = fit(&mut messages, 40, chars);
        assert!(cut.truncated_chars > 4900);
        assert!(chars(&messages) <= 40);
        assert_eq!(messages[0].content, "be brief");
        assert!(messages[1].content.ends_with("the question?"));
        assert_eq!(chars(&messages), 40, "as much as fits is kept");
    }

    #[test]
    fn a_budget_below_the_template_empties_the_messages_without_failing() {
        let mut messages = vec![Message::new("user", "héllo wörld")];
        let cut = fit(&mut messages, 2, chars);
        assert_eq!(messages[0].content, "");
        assert_eq!(cut.truncated_chars, 11);
    }
}
