//! BullMQ's built-in backoff strategies (`fixed`, `exponential`, with jitter), as
//! `Backoffs.calculate` computes them; other types are the user's (the processor's).

use serde_json::Value as Json;

/// What `opts.backoff` asks for after `attempts_made` attempts (this one included).
pub enum Backoff {
    /// Retry after this many ms (0: at once).
    Delay(u64),
    /// A type BullMQ does not know: the processor's own strategy decides.
    Custom { kind: String, delay: u64 },
    /// No backoff option: retry at once.
    None,
}

pub fn of(opts: &Json, attempts_made: i64, random: f64) -> Backoff {
    let b = match opts.get("backoff") {
        None | Some(Json::Null) => return Backoff::None,
        Some(Json::Number(n)) => return Backoff::Delay(n.as_f64().unwrap_or(0.0).max(0.0) as u64),
        Some(b) => b,
    };
    let kind = b.get("type").and_then(Json::as_str).unwrap_or("fixed");
    let delay = b.get("delay").and_then(Json::as_f64).unwrap_or(0.0).max(0.0);
    let jitter = b.get("jitter").and_then(Json::as_f64).unwrap_or(0.0).clamp(0.0, 1.0);
    match kind {
        "fixed" => {
            if jitter > 0.0 {
                let min = delay * (1.0 - jitter);
                Backoff::Delay((random * delay * jitter + min).floor() as u64)
            } else {
                Backoff::Delay(delay as u64)
            }
        }
        "exponential" => {
            let max = (2f64.powi((attempts_made - 1).clamp(0, 1000) as i32) * delay).round();
            if jitter > 0.0 {
                let min = max * (1.0 - jitter);
                Backoff::Delay((random * max * jitter + min).floor() as u64)
            } else {
                Backoff::Delay(max.min(u64::MAX as f64) as u64)
            }
        }
        other => Backoff::Custom {
            kind: other.to_string(),
            delay: delay as u64,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn delay(opts: Json, n: i64) -> Option<u64> {
        match of(&opts, n, 0.5) {
            Backoff::Delay(d) => Some(d),
            _ => None,
        }
    }

    #[test]
    fn builtin_strategies() {
        assert_eq!(delay(json!({"backoff": {"type": "exponential", "delay": 100}}), 1), Some(100));
        assert_eq!(delay(json!({"backoff": {"type": "exponential", "delay": 100}}), 3), Some(400));
        assert_eq!(delay(json!({"backoff": {"type": "fixed", "delay": 250}}), 5), Some(250));
        assert_eq!(delay(json!({"backoff": 70}), 2), Some(70));
        assert!(matches!(of(&json!({}), 1, 0.5), Backoff::None));
        assert!(matches!(
            of(&json!({"backoff": {"type": "cortex", "delay": 5}}), 1, 0.5),
            Backoff::Custom { .. }
        ));
        // jitter 0.5 with random 0.5: between half and all of the delay
        assert_eq!(
            delay(json!({"backoff": {"type": "fixed", "delay": 100, "jitter": 0.5}}), 1),
            Some(75)
        );
    }
}
