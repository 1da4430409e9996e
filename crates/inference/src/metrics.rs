//! Prometheus text metrics: requests by status, prompt and generated tokens, time to first
//! token, per-token latency, grammar compile and mask time histograms, busy slots and
//! queue depth. Lock-free counters written by handlers and the engine thread, rendered on
//! `GET /metrics`.

use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// A histogram with fixed bucket bounds in seconds.
#[derive(Debug)]
pub struct Histogram {
    /// Upper bounds, ascending.
    bounds: &'static [f64],
    /// Count per bucket (not cumulative), plus one for +Inf.
    counts: Vec<AtomicU64>,
    /// Sum of observations in microseconds.
    sum_us: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_us: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, seconds: f64) {
        let i = self
            .bounds
            .iter()
            .position(|b| seconds <= *b)
            .unwrap_or(self.bounds.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us
            .fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cum = 0;
        for (i, b) in self.bounds.iter().enumerate() {
            cum += self.counts[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cum}");
        }
        cum += self.counts[self.bounds.len()].load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cum}");
        let _ = writeln!(
            out,
            "{name}_sum {}",
            self.sum_us.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count {cum}");
    }
}

const TTFT_BOUNDS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
const TOKEN_BOUNDS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0];
const COMPILE_BOUNDS: &[f64] = &[0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0];
const MASK_BOUNDS: &[f64] = &[
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.01, 0.1,
];

/// Every metric the daemon exports.
#[derive(Debug)]
pub struct Metrics {
    /// Finished requests by HTTP status code.
    requests: Mutex<std::collections::BTreeMap<u16, u64>>,
    /// Requests admitted per served Card.
    cards: Mutex<std::collections::BTreeMap<String, u64>>,
    /// Decode steps that changed the context's adapter set (each costs a graph reserve).
    pub adapter_switches: AtomicU64,
    /// Prompt tokens decoded.
    pub prompt_tokens: AtomicU64,
    /// Prompt tokens reused from the KV cache instead of decoded.
    pub prompt_tokens_cached: AtomicU64,
    /// Tokens generated.
    pub generated_tokens: AtomicU64,
    /// From admission to the first generated token.
    pub ttft: Histogram,
    /// Between consecutive generated tokens of one sequence.
    pub token_latency: Histogram,
    /// Slots decoding or prefilling now (all models).
    pub busy_slots: AtomicU64,
    /// Requests waiting for a slot (all models).
    pub queue_depth: AtomicU64,
    /// Compiling a grammar or schema (cache misses only).
    pub grammar_compile: Histogram,
    /// Computing one full token mask (only when the sampled token was rejected).
    pub grammar_mask: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: Mutex::default(),
            cards: Mutex::default(),
            adapter_switches: AtomicU64::new(0),
            prompt_tokens: AtomicU64::new(0),
            prompt_tokens_cached: AtomicU64::new(0),
            generated_tokens: AtomicU64::new(0),
            ttft: Histogram::new(TTFT_BOUNDS),
            token_latency: Histogram::new(TOKEN_BOUNDS),
            busy_slots: AtomicU64::new(0),
            queue_depth: AtomicU64::new(0),
            grammar_compile: Histogram::new(COMPILE_BOUNDS),
            grammar_mask: Histogram::new(MASK_BOUNDS),
        }
    }
}

impl Metrics {
    pub fn request(&self, status: u16) {
        let mut m = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry(status).or_default() += 1;
    }

    /// A request naming Card `name` was admitted.
    pub fn card_request(&self, name: &str) {
        let mut m = self.cards.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry(name.to_string()).or_default() += 1;
    }

    /// Requests seen with `status` so far.
    pub fn requests_with(&self, status: u16) -> u64 {
        let m = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        m.get(&status).copied().unwrap_or(0)
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP sovereign_requests_total HTTP requests by status code.\n# TYPE sovereign_requests_total counter\n");
        {
            let m = self.requests.lock().unwrap_or_else(|p| p.into_inner());
            for (status, n) in m.iter() {
                let _ = writeln!(out, "sovereign_requests_total{{status=\"{status}\"}} {n}");
            }
        }
        let counter = |out: &mut String, name: &str, help: &str, v: &AtomicU64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                v.load(Ordering::Relaxed)
            );
        };
        counter(
            &mut out,
            "sovereign_prompt_tokens_total",
            "Prompt tokens decoded.",
            &self.prompt_tokens,
        );
        counter(
            &mut out,
            "sovereign_prompt_tokens_cached_total",
            "Prompt tokens reused from the KV cache instead of decoded.",
            &self.prompt_tokens_cached,
        );
        out.push_str("# HELP sovereign_card_requests_total Requests admitted per served Card.\n# TYPE sovereign_card_requests_total counter\n");
        {
            let m = self.cards.lock().unwrap_or_else(|p| p.into_inner());
            for (card, n) in m.iter() {
                let _ = writeln!(out, "sovereign_card_requests_total{{card=\"{card}\"}} {n}");
            }
        }
        counter(
            &mut out,
            "sovereign_adapter_switches_total",
            "Decode steps that changed the adapter set the context applies.",
            &self.adapter_switches,
        );
        counter(
            &mut out,
            "sovereign_generated_tokens_total",
            "Tokens generated.",
            &self.generated_tokens,
        );
        self.ttft.render(
            &mut out,
            "sovereign_time_to_first_token_seconds",
            "Time from admission to the first generated token.",
        );
        self.token_latency.render(
            &mut out,
            "sovereign_token_latency_seconds",
            "Time between generated tokens of one sequence.",
        );
        self.grammar_compile.render(
            &mut out,
            "sovereign_grammar_compile_seconds",
            "Time to compile a grammar or JSON schema (cache misses).",
        );
        self.grammar_mask.render(
            &mut out,
            "sovereign_grammar_mask_seconds",
            "Time to compute one token mask of constrained decoding.",
        );
        let gauge = |out: &mut String, name: &str, help: &str, v: &AtomicU64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {}",
                v.load(Ordering::Relaxed)
            );
        };
        gauge(
            &mut out,
            "sovereign_busy_slots",
            "Slots holding a sequence.",
            &self.busy_slots,
        );
        gauge(
            &mut out,
            "sovereign_queue_depth",
            "Requests waiting for a slot.",
            &self.queue_depth,
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let m = Metrics::default();
        m.ttft.observe(0.003);
        m.ttft.observe(0.2);
        m.ttft.observe(100.0);
        m.request(200);
        m.request(429);
        m.request(200);
        let text = m.render();
        assert!(
            text.contains("sovereign_time_to_first_token_seconds_bucket{le=\"0.005\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("sovereign_time_to_first_token_seconds_bucket{le=\"0.25\"} 2\n"));
        assert!(text.contains("sovereign_time_to_first_token_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(text.contains("sovereign_requests_total{status=\"200\"} 2\n"));
        assert_eq!(m.requests_with(429), 1);
    }
}
