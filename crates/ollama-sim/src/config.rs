//! The simulator's behaviour settings.
//!
//! The same JSON object is taken by the command line (one flag per field),
//! returned by `GET /_sim/config` and merged by `PUT /_sim/config`, so a test
//! can change a running simulator:
//!
//! ```json
//! {
//!   "models": ["llama3.2:1b", "qwen2.5:0.5b"],
//!   "first_token_ms": 0,
//!   "tokens_per_sec": 0.0,
//!   "reply_tokens": 12,
//!   "error_rate": 0.0,
//!   "mid_stream_error_after": null,
//!   "hang": false,
//!   "slow_start_ms": 0
//! }
//! ```

use serde::{Deserialize, Serialize};

/// The models served when none are configured.
pub const DEFAULT_MODELS: [&str; 2] = ["llama3.2:1b", "qwen2.5:0.5b"];

/// The default minimum reply length, in tokens.
pub const DEFAULT_REPLY_TOKENS: usize = 12;

/// How the simulator behaves; every field can be changed at run time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimConfig {
    /// The models `/api/tags` lists and generation accepts (`name:tag`; a
    /// request without a tag means `:latest`, matched case-insensitively).
    pub models: Vec<String>,
    /// Delay before the first token of every generation, in milliseconds.
    pub first_token_ms: u64,
    /// Pace of the tokens after the first; 0 sends them as fast as possible.
    pub tokens_per_sec: f64,
    /// Minimum reply length in tokens: the deterministic reply is padded with
    /// filler words up to this many (see the crate docs); `options.num_predict`
    /// cuts it shorter.
    pub reply_tokens: usize,
    /// Fraction (0.0 to 1.0) of generation requests answered with
    /// 500 `{"error":"simulated failure"}` before any token. Deterministic:
    /// the k-th generation request since the last configuration change
    /// (k = 1, 2, ...) fails when `floor(k * rate) > floor((k - 1) * rate)`,
    /// so 1.0 fails all, 0.5 every second one, 0.25 every fourth.
    pub error_rate: f64,
    /// After this many tokens, a stream ends with the line
    /// `{"error":"simulated failure mid-stream"}` instead of going on (and a
    /// non-streamed request gets a 500 with that error).
    pub mid_stream_error_after: Option<usize>,
    /// Accept generation requests (after validation) and never answer them:
    /// the connection stays open until the client gives up. Setting it back
    /// to false affects new requests only; held ones stay unanswered until
    /// the simulator stops. Other routes keep answering.
    pub hang: bool,
    /// Extra delay before the first token of every generation, in
    /// milliseconds, on top of `first_token_ms`.
    pub slow_start_ms: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            models: DEFAULT_MODELS.iter().map(|m| (*m).to_owned()).collect(),
            first_token_ms: 0,
            tokens_per_sec: 0.0,
            reply_tokens: DEFAULT_REPLY_TOKENS,
            error_rate: 0.0,
            mid_stream_error_after: None,
            hang: false,
            slow_start_ms: 0,
        }
    }
}

impl SimConfig {
    /// Checks the values are usable; the error names the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.models.is_empty() {
            return Err("models: at least one model is required".into());
        }
        if let Some(bad) = self.models.iter().find(|m| m.trim().is_empty()) {
            return Err(format!("models: invalid model name {bad:?}"));
        }
        if !(0.0..=1.0).contains(&self.error_rate) {
            return Err(format!(
                "error_rate: must be between 0.0 and 1.0, got {}",
                self.error_rate
            ));
        }
        if !self.tokens_per_sec.is_finite() || self.tokens_per_sec < 0.0 {
            return Err(format!(
                "tokens_per_sec: must be 0 (unlimited) or positive, got {}",
                self.tokens_per_sec
            ));
        }
        Ok(())
    }

    /// This configuration with the fields present in `patch` (a JSON object
    /// with any subset of the fields) replaced; `null` clears
    /// `mid_stream_error_after`. Unknown fields and invalid values are errors.
    pub fn merged(&self, patch: &serde_json::Value) -> Result<Self, String> {
        let serde_json::Value::Object(patch) = patch else {
            return Err("expected a JSON object of settings".into());
        };
        let mut current = match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(map)) => map,
            Ok(_) | Err(_) => return Err("could not encode the current settings".into()),
        };
        for (key, value) in patch {
            current.insert(key.clone(), value.clone());
        }
        let merged: Self = serde_json::from_value(serde_json::Value::Object(current))
            .map_err(|e| e.to_string())?;
        merged.validate()?;
        Ok(merged)
    }

    /// The delay between two tokens, if paced.
    pub fn token_interval(&self) -> Option<std::time::Duration> {
        (self.tokens_per_sec > 0.0)
            .then(|| std::time::Duration::from_secs_f64(1.0 / self.tokens_per_sec))
    }

    /// The delay before the first token (`first_token_ms + slow_start_ms`).
    pub fn first_token_delay(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.first_token_ms.saturating_add(self.slow_start_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_keeps_absent_fields_and_clears_null() {
        let base = SimConfig {
            mid_stream_error_after: Some(3),
            ..SimConfig::default()
        };
        let merged = base.merged(&json!({"hang": true})).ok();
        assert_eq!(
            merged,
            Some(SimConfig {
                hang: true,
                mid_stream_error_after: Some(3),
                ..SimConfig::default()
            })
        );
        let cleared = base.merged(&json!({"mid_stream_error_after": null})).ok();
        assert_eq!(cleared, Some(SimConfig::default()));
    }

    #[test]
    fn merge_rejects_unknown_and_invalid() {
        let base = SimConfig::default();
        assert!(base.merged(&json!({"nope": 1})).is_err());
        assert!(base.merged(&json!({"error_rate": 1.5})).is_err());
        assert!(base.merged(&json!({"models": []})).is_err());
        assert!(base.merged(&json!({"tokens_per_sec": -1})).is_err());
        assert!(base.merged(&json!([1])).is_err());
    }
}
