//! Ollama's `options`, as far as a generation here honours them, with
//! Ollama's defaults. Options this service does not use (`num_gpu`,
//! `mirostat`, ...) are accepted and ignored, as Ollama ignores the ones a
//! runner does not know; a known option of the wrong type is a 400.

use serde::Deserialize;
use serde_json::Value;

/// What one generation asks for.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct GenerationOptions {
    /// Sampling temperature; 0 picks the most likely token every time.
    pub temperature: f32,
    /// Keep the k most likely tokens (0: all).
    pub top_k: i32,
    /// Keep the most likely tokens up to this probability mass (1: all).
    pub top_p: f32,
    /// Drop tokens less likely than this fraction of the most likely one.
    pub min_p: f32,
    /// The sampler's seed; none: a new one each time.
    pub seed: Option<i64>,
    /// Most tokens to generate; -1 (or any negative): until the model
    /// stops or the context is full.
    pub num_predict: i64,
    /// Sequences that end the answer (not included in it).
    #[serde(deserialize_with = "one_or_many")]
    pub stop: Vec<String>,
    /// Context window in tokens (none: the service's default).
    pub num_ctx: Option<u32>,
    /// Penalty on repeating one of the last `repeat_last_n` tokens (1: none).
    pub repeat_penalty: f32,
    /// How many recent tokens the penalties look at (0: none).
    pub repeat_last_n: i32,
    /// Penalty on any token already present (0: none).
    pub presence_penalty: f32,
    /// Penalty growing with how often a token was used (0: none).
    pub frequency_penalty: f32,
}

impl Default for GenerationOptions {
    /// Ollama's defaults.
    fn default() -> Self {
        Self {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.9,
            min_p: 0.0,
            seed: None,
            num_predict: -1,
            stop: Vec::new(),
            num_ctx: None,
            repeat_penalty: 1.1,
            repeat_last_n: 64,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
        }
    }
}

/// `stop` as a string or a list of strings.
fn one_or_many<'de, D: serde::Deserializer<'de>>(de: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<OneOrMany>::deserialize(de)? {
        None => Vec::new(),
        Some(OneOrMany::One(stop)) => vec![stop],
        Some(OneOrMany::Many(stops)) => stops,
    })
}

impl GenerationOptions {
    /// Reads a request's `options` (absent or null: the defaults).
    pub fn from_request(options: Option<&Value>) -> Result<Self, String> {
        match options {
            None | Some(Value::Null) => Ok(Self::default()),
            Some(value @ Value::Object(_)) => {
                let options: Self = serde_json::from_value(value.clone())
                    .map_err(|e| format!("invalid options: {e}"))?;
                options.check()?;
                Ok(options)
            }
            Some(other) => Err(format!("invalid options: expected an object, got {other}")),
        }
    }

    /// The limits a sampler needs.
    fn check(&self) -> Result<(), String> {
        let finite = [
            ("temperature", self.temperature),
            ("top_p", self.top_p),
            ("min_p", self.min_p),
            ("repeat_penalty", self.repeat_penalty),
            ("presence_penalty", self.presence_penalty),
            ("frequency_penalty", self.frequency_penalty),
        ];
        if let Some((name, _)) = finite.iter().find(|(_, v)| !v.is_finite()) {
            return Err(format!("invalid options: {name} must be a finite number"));
        }
        if self.temperature < 0.0 {
            return Err("invalid options: temperature must not be negative".into());
        }
        if self.repeat_penalty <= 0.0 {
            return Err("invalid options: repeat_penalty must be greater than 0".into());
        }
        if self.num_ctx == Some(0) {
            return Err("invalid options: num_ctx must be at least 1".into());
        }
        Ok(())
    }

    /// The most tokens to generate, if limited.
    pub fn token_limit(&self) -> Option<usize> {
        usize::try_from(self.num_predict).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn absent_options_are_ollamas_defaults() {
        let options = GenerationOptions::from_request(None).unwrap_or_default();
        assert_eq!(options, GenerationOptions::default());
        assert_eq!(options.token_limit(), None);
    }

    #[test]
    fn known_options_are_read_and_unknown_ones_ignored() {
        let options = GenerationOptions::from_request(Some(&json!({
            "temperature": 0, "seed": 42, "num_predict": 8, "stop": "\n",
            "num_ctx": 512, "top_k": 1, "num_gpu": 99
        })))
        .unwrap_or_default();
        assert_eq!(options.temperature, 0.0);
        assert_eq!(options.seed, Some(42));
        assert_eq!(options.token_limit(), Some(8));
        assert_eq!(options.stop, vec!["\n".to_owned()]);
        assert_eq!(options.num_ctx, Some(512));
        assert_eq!(options.top_k, 1);
        let many = GenerationOptions::from_request(Some(&json!({"stop": ["a", "b"]})));
        assert_eq!(
            many.map(|o| o.stop),
            Ok(vec!["a".to_owned(), "b".to_owned()])
        );
    }

    #[test]
    fn wrong_types_and_values_are_refused() {
        for bad in [
            json!({"temperature": "hot"}),
            json!({"temperature": -1}),
            json!({"stop": 3}),
            json!({"num_ctx": 0}),
            json!({"repeat_penalty": 0}),
            json!([1]),
        ] {
            let refused = GenerationOptions::from_request(Some(&bad));
            assert!(
                refused
                    .as_ref()
                    .is_err_and(|e| e.starts_with("invalid options")),
                "{bad}: {refused:?}"
            );
        }
    }
}
