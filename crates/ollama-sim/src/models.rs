//! Model metadata as `/api/tags`, `/api/ps` and `/api/show` report it for
//! the simulator's made-up models.

use chrono::{DateTime, TimeZone, Utc};
use ollama_wire::{ModelDetails, canonical};

use crate::reply::hex_digest;

/// Everything reported about one configured model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelInfo {
    /// The configured name, `name:tag`.
    pub name: String,
    /// Size on disk, in bytes.
    pub size: u64,
    /// `sha256` digest, 64 hex digits.
    pub digest: String,
    /// Details.
    pub details: ModelDetails,
}

/// The metadata of a configured model: real-looking figures for the default
/// models, figures derived from the name for any other.
pub fn info(name: &str) -> ModelInfo {
    let canon = canonical(name);
    let (size, family, parameter_size, quantization) = match canon.as_str() {
        "llama3.2:1b" => (1_321_098_329, "llama", "1.2B".to_owned(), "Q8_0"),
        "llama3.2:3b" | "llama3.2:latest" => (2_019_393_189, "llama", "3.2B".to_owned(), "Q4_K_M"),
        "qwen2.5:0.5b" => (397_821_319, "qwen2", "494.03M".to_owned(), "Q4_K_M"),
        _ => {
            let base = canon.rsplit('/').next().unwrap_or(&canon);
            let (family, tag) = base.split_once(':').unwrap_or((base, "latest"));
            let family: String = family
                .chars()
                .take_while(|c| c.is_ascii_alphabetic())
                .collect();
            let family = if family.is_empty() {
                "llama".to_owned()
            } else {
                family
            };
            let parameter_size = tag
                .strip_suffix('b')
                .filter(|n| n.parse::<f64>().is_ok())
                .map(|n| format!("{}B", n.to_uppercase()))
                .unwrap_or_else(|| "7B".to_owned());
            let digest = hex_digest(&canon);
            let size = 500_000_000
                + u64::from_str_radix(digest.get(..8).unwrap_or("0"), 16).unwrap_or(0)
                    % 4_000_000_000;
            return ModelInfo {
                name: name.to_owned(),
                size,
                digest,
                details: ModelDetails::gguf(&family, &parameter_size, "Q4_K_M"),
            };
        }
    };
    ModelInfo {
        name: name.to_owned(),
        size,
        digest: hex_digest(&canon),
        details: ModelDetails::gguf(family, &parameter_size, quantization),
    }
}

/// When every model was "pulled": a fixed time, so answers are reproducible.
pub fn modified_at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 15, 10, 30, 0)
        .single()
        .unwrap_or_else(Utc::now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_stable_hex() {
        let a = info("llama3.2:1b");
        assert_eq!(a.digest.len(), 64);
        assert_eq!(a, info("llama3.2:1b"));
        let other = info("phi3:3.8b");
        assert_eq!(other.details.family, "phi");
        assert_eq!(other.details.parameter_size, "3.8B");
    }
}
