//! Turning generated token pieces into the text a client receives: bytes
//! into whole UTF-8 characters (a token may end inside one), and stop
//! sequences cut out, holding back text that may be the start of one so
//! that a stop sequence never reaches the client, even split over tokens.

/// Collects token bytes and gives back the longest whole-UTF-8 prefix.
#[derive(Debug, Default)]
pub struct Utf8Pieces {
    pending: Vec<u8>,
}

impl Utf8Pieces {
    /// Adds `bytes` and returns the text that is complete now. Invalid
    /// bytes (never produced by a byte-level vocabulary, but possible with a
    /// sampled partial sequence that is never completed) become U+FFFD.
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(text) => {
                    out.push_str(text);
                    self.pending.clear();
                    return out;
                }
                Err(error) => {
                    let valid = error.valid_up_to();
                    out.push_str(&String::from_utf8_lossy(&self.pending[..valid]));
                    match error.error_len() {
                        // An incomplete character at the end: wait for more.
                        None => {
                            self.pending.drain(..valid);
                            return out;
                        }
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            self.pending.drain(..valid + bad);
                        }
                    }
                }
            }
        }
    }

    /// What is left at the end: an incomplete character, as U+FFFD.
    pub fn finish(&mut self) -> String {
        let rest = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        rest
    }
}

/// Cuts the text at the first stop sequence.
#[derive(Debug)]
pub struct StopScanner {
    stops: Vec<String>,
    held: String,
}

/// What [`StopScanner::push`] lets through.
#[derive(Debug, PartialEq, Eq)]
pub struct Scanned {
    /// Text safe to send now.
    pub text: String,
    /// A stop sequence was reached: generation ends, nothing after it is sent.
    pub stopped: bool,
}

impl StopScanner {
    /// A scanner for `stops` (empty strings are ignored).
    pub fn new(stops: &[String]) -> Self {
        Self {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            held: String::new(),
        }
    }

    /// Adds generated text; returns what may be sent.
    pub fn push(&mut self, text: &str) -> Scanned {
        self.held.push_str(text);
        if let Some(at) = self
            .stops
            .iter()
            .filter_map(|stop| self.held.find(stop.as_str()))
            .min()
        {
            let text = self.held[..at].to_owned();
            self.held.clear();
            return Scanned {
                text,
                stopped: true,
            };
        }
        let keep = self.longest_stop_prefix_at_end();
        let split = self.held.len() - keep;
        let text = self.held[..split].to_owned();
        self.held.drain(..split);
        Scanned {
            text,
            stopped: false,
        }
    }

    /// The text held back at the end of the generation (it was not a stop
    /// sequence after all).
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }

    /// The length of the longest end of the held text that begins some stop
    /// sequence (always on a character boundary).
    fn longest_stop_prefix_at_end(&self) -> usize {
        self.held
            .char_indices()
            .map(|(i, _)| i)
            .find(|&i| {
                let tail = &self.held[i..];
                self.stops.iter().any(|stop| stop.starts_with(tail))
            })
            .map_or(0, |i| self.held.len() - i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn characters_split_over_tokens_come_out_whole() {
        let mut pieces = Utf8Pieces::default();
        let euro = "€".as_bytes();
        assert_eq!(pieces.push(b"a"), "a");
        assert_eq!(pieces.push(&euro[..1]), "");
        assert_eq!(pieces.push(&euro[1..]), "€");
        assert_eq!(pieces.push(&[0xff, b'b']), "\u{fffd}b");
        assert_eq!(pieces.push(&euro[..2]), "");
        assert_eq!(pieces.finish(), "\u{fffd}");
    }

    #[test]
    fn a_stop_sequence_split_over_tokens_is_never_sent() {
        let mut scanner = StopScanner::new(&["\nUser:".to_owned()]);
        let mut sent = String::new();
        for piece in ["Hello", " there", "\n", "Us", "er", ": more"] {
            let scanned = scanner.push(piece);
            sent.push_str(&scanned.text);
            if scanned.stopped {
                break;
            }
        }
        assert_eq!(sent, "Hello there");
    }

    #[test]
    fn held_text_that_was_not_a_stop_is_sent() {
        let mut scanner = StopScanner::new(&["END".to_owned(), String::new()]);
        assert_eq!(scanner.push("the E").text, "the ");
        assert_eq!(
            scanner.push("nd"),
            Scanned {
                text: "End".to_owned(),
                stopped: false
            }
        );
        assert_eq!(scanner.push("EN").text, "");
        assert_eq!(scanner.finish(), "EN");
    }

    #[test]
    fn the_earliest_of_several_stops_wins() {
        let mut scanner = StopScanner::new(&["b".to_owned(), "a".to_owned()]);
        let scanned = scanner.push("xxabxx");
        assert_eq!(scanned.text, "xx");
        assert!(scanned.stopped);
    }
}
