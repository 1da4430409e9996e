//! The sampling a Card's requests get: the Card's values over the daemon's defaults
//! ([`Sampling::default`]), each marked with where it came from.

use serde::Serialize;
use serde_json::{Value, json};

use super::Card;
use crate::validate::{REPEAT_PENALTY_DEFAULT, Sampling};

/// One sampling parameter.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Setting {
    /// The parameter, as a Card and a request name it.
    pub key: &'static str,
    /// Its value; null for "none": a random seed per request, or a budget of whatever the
    /// context leaves.
    pub value: Value,
    /// Whether the Card set it (else it is the daemon's default).
    pub from_card: bool,
}

impl Card {
    /// Every sampling parameter, in the Card format's order.
    pub fn sampling(&self) -> Vec<Setting> {
        let d = Sampling::default();
        let card = self.spec.sampling.clone().unwrap_or_default();
        let float = |v: f32| json!(f64::from(v));
        let pick = |key: &'static str, mine: Option<Value>, default: Value| Setting {
            key,
            from_card: mine.is_some(),
            value: mine.unwrap_or(default),
        };
        vec![
            pick(
                "temperature",
                card.temperature.map(|v| json!(v)),
                float(d.temperature),
            ),
            pick("top_p", card.top_p.map(|v| json!(v)), float(d.top_p)),
            pick("top_k", card.top_k.map(|v| json!(v)), json!(d.top_k)),
            pick("min_p", card.min_p.map(|v| json!(v)), float(d.min_p)),
            pick(
                "repeat_penalty",
                card.repeat_penalty.map(|v| json!(v)),
                float(REPEAT_PENALTY_DEFAULT),
            ),
            pick(
                "presence_penalty",
                card.presence_penalty.map(|v| json!(v)),
                float(d.presence_penalty),
            ),
            pick(
                "frequency_penalty",
                card.frequency_penalty.map(|v| json!(v)),
                float(d.frequency_penalty),
            ),
            pick(
                "seed",
                // In the range a JSON number holds: the checks bound it to i64 and u64.
                card.seed.and_then(|v| serde_json::to_value(v).ok()),
                json!(d.seed),
            ),
            pick("stop", card.stop.map(|v| json!(v)), json!([])),
            pick("max_tokens", card.max_tokens.map(|v| json!(v)), Value::Null),
        ]
    }
}
