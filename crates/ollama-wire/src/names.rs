//! Model names as Ollama matches them (`name` means `name:latest`, case
//! does not matter) and `keep_alive` as it reads it.

/// The name a request means: lower case, `:latest` when no tag is given.
pub fn canonical(name: &str) -> String {
    let name = name.trim().to_lowercase();
    let last = name.rsplit('/').next().unwrap_or(&name);
    if last.contains(':') {
        name
    } else {
        format!("{name}:latest")
    }
}

/// The configured model `requested` names, if any.
pub fn find<'a>(models: &'a [String], requested: &str) -> Option<&'a String> {
    let wanted = canonical(requested);
    models.iter().find(|m| canonical(m) == wanted)
}

/// How long a model stays loaded after a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepAlive {
    /// Unload right after the request (`0`).
    Unload,
    /// Stay loaded this long.
    For(chrono::Duration),
    /// Stay loaded for ever (a negative duration).
    Forever,
}

/// The default `keep_alive`: five minutes.
pub const DEFAULT_KEEP_ALIVE: KeepAlive = KeepAlive::For(chrono::Duration::minutes(5));

/// Parses `keep_alive`: a number of seconds or a Go-style duration string
/// (`"5m"`, `"1h30m"`, `"10s"`, `"-1"`); anything unreadable is an error.
pub fn parse_keep_alive(value: Option<&serde_json::Value>) -> Result<KeepAlive, String> {
    let seconds = match value {
        None | Some(serde_json::Value::Null) => return Ok(DEFAULT_KEEP_ALIVE),
        Some(serde_json::Value::Number(n)) => n.as_f64().unwrap_or(0.0),
        Some(serde_json::Value::String(s)) => parse_duration(s)?,
        Some(other) => return Err(format!("invalid keep_alive: {other}")),
    };
    Ok(if seconds < 0.0 {
        KeepAlive::Forever
    } else if seconds == 0.0 {
        KeepAlive::Unload
    } else {
        KeepAlive::For(chrono::Duration::milliseconds((seconds * 1000.0) as i64))
    })
}

fn parse_duration(text: &str) -> Result<f64, String> {
    let invalid = || format!("time: invalid duration \"{text}\"");
    let s = text.trim();
    if let Ok(n) = s.parse::<f64>() {
        return Ok(n);
    }
    let (sign, mut rest) = match s.strip_prefix('-') {
        Some(rest) => (-1.0, rest),
        None => (1.0, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total = 0.0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(invalid)?;
        let (number, tail) = rest.split_at(digits);
        let number: f64 = number.parse().map_err(|_| invalid())?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let factor = match unit {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(invalid()),
        };
        total += number * factor;
        rest = tail;
    }
    Ok(sign * total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_match_with_default_tag_and_case() {
        let models = vec!["llama3.2:1b".to_owned(), "Mistral".to_owned()];
        assert!(find(&models, "llama3.2:1b").is_some());
        assert!(find(&models, "LLAMA3.2:1B").is_some());
        assert!(find(&models, "mistral:latest").is_some());
        assert!(find(&models, "llama3.2").is_none());
    }

    #[test]
    fn keep_alive_forms() {
        assert_eq!(parse_keep_alive(None), Ok(DEFAULT_KEEP_ALIVE));
        assert_eq!(parse_keep_alive(Some(&json!(0))), Ok(KeepAlive::Unload));
        assert_eq!(parse_keep_alive(Some(&json!("0"))), Ok(KeepAlive::Unload));
        assert_eq!(parse_keep_alive(Some(&json!(-1))), Ok(KeepAlive::Forever));
        assert_eq!(
            parse_keep_alive(Some(&json!("-1m"))),
            Ok(KeepAlive::Forever)
        );
        assert_eq!(
            parse_keep_alive(Some(&json!("1h30m"))),
            Ok(KeepAlive::For(chrono::Duration::minutes(90)))
        );
        assert!(parse_keep_alive(Some(&json!("soon"))).is_err());
        assert!(parse_keep_alive(Some(&json!([1]))).is_err());
    }
}
