//! The daemon's bounds on its clients: connection deadlines, the connection cap, the
//! shutdown deadline and the grammar-compile budget. Each bound is defined once here, with
//! its default and its range; `serve`'s flags, the profile's `[inference]` keys, the
//! validator and the rendered unit all take them from [`BOUNDS`], so a value the daemon
//! would refuse never gets past `sovereign validate`.

use std::time::Duration;

/// One bound on clients: its names on every side, default and allowed range.
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    /// The profile key under `[inference]` (snake case).
    pub key: &'static str,
    /// The `serve` flag, without the dashes.
    pub flag: &'static str,
    /// What it bounds, for `--help`, the schema and error messages.
    pub about: &'static str,
    /// The default and the range, in the bound's unit.
    pub kind: BoundKind,
}

/// A duration in seconds or a count, with its default and inclusive range.
#[derive(Debug, Clone, Copy)]
pub enum BoundKind {
    Seconds { default: u64, min: u64, max: u64 },
    Count { default: u64, min: u64, max: u64 },
}

impl BoundKind {
    pub const fn default_value(self) -> u64 {
        match self {
            BoundKind::Seconds { default, .. } | BoundKind::Count { default, .. } => default,
        }
    }

    pub fn range_inclusive(self) -> std::ops::RangeInclusive<u64> {
        let (min, max) = self.range();
        min..=max
    }

    pub const fn range(self) -> (u64, u64) {
        match self {
            BoundKind::Seconds { min, max, .. } | BoundKind::Count { min, max, .. } => (min, max),
        }
    }
}

impl Bound {
    /// Check `value` (seconds or a count) against the range; the error names the bound,
    /// the range and the value given.
    pub fn check(&self, value: u64) -> Result<u64, String> {
        let (min, max) = self.kind.range();
        if (min..=max).contains(&value) {
            return Ok(value);
        }
        Err(match self.kind {
            BoundKind::Seconds { .. } => format!(
                "{} must be between {} and {}, not {}",
                self.key,
                show_secs(min),
                show_secs(max),
                show_secs(value)
            ),
            BoundKind::Count { .. } => {
                format!("{} must be between {min} and {max}, not {value}", self.key)
            }
        })
    }

    /// The default as the profile and the flag write it (`10s`, `512`).
    pub fn default_text(&self) -> String {
        match self.kind {
            BoundKind::Seconds { default, .. } => show_secs(default),
            BoundKind::Count { default, .. } => default.to_string(),
        }
    }
}

fn show_secs(s: u64) -> String {
    format!("{s}s")
}

/// The whole request head (request line and headers) must arrive within this time of the
/// connection opening, or of its first byte after a response, however slowly it trickles.
pub const HEADER_TIMEOUT: Bound = Bound {
    key: "header_timeout",
    flag: "header-timeout",
    about: "Deadline for a request's whole head (request line and headers), however slowly it arrives",
    kind: BoundKind::Seconds {
        default: 10,
        min: 1,
        max: 300,
    },
};

/// The body must arrive within this time of the head; a slower one is a 408. Also bounds
/// how long a response may wait on a client that stopped reading.
pub const BODY_TIMEOUT: Bound = Bound {
    key: "body_timeout",
    flag: "body-timeout",
    about: "Deadline for a request's body once its head arrived, and for a client that stops reading its response",
    kind: BoundKind::Seconds {
        default: 30,
        min: 1,
        max: 3600,
    },
};

/// A keep-alive connection with no request in flight is closed after this long.
pub const IDLE_TIMEOUT: Bound = Bound {
    key: "idle_timeout",
    flag: "idle-timeout",
    about: "How long a keep-alive connection may wait for its next request",
    kind: BoundKind::Seconds {
        default: 60,
        min: 1,
        max: 3600,
    },
};

/// Connections served at once; one beyond the cap is answered 503 and closed at once.
pub const MAX_CONNECTIONS: Bound = Bound {
    key: "max_connections",
    flag: "max-connections",
    about: "Connections served at once; beyond it a connection is answered 503 and closed",
    kind: BoundKind::Count {
        default: 512,
        min: 1,
        max: 65_536,
    },
};

/// On SIGTERM, in-flight requests get this long to finish; then they end with an error
/// and the daemon exits 0.
pub const SHUTDOWN_TIMEOUT: Bound = Bound {
    key: "shutdown_timeout",
    flag: "shutdown-timeout",
    about: "On SIGTERM, how long in-flight requests may finish before they end with an error",
    kind: BoundKind::Seconds {
        default: 20,
        min: 0,
        max: 3600,
    },
};

/// One grammar compile may take this long (a 503 beyond, saying so).
pub const COMPILE_TIMEOUT: Bound = Bound {
    key: "grammar_compile_timeout",
    flag: "grammar-compile-timeout",
    about: "Time budget of one grammar compile (response_format or grammar); beyond it the request is a 503",
    kind: BoundKind::Seconds {
        default: 10,
        min: 1,
        max: 300,
    },
};

/// Every bound, in the order `--help` and the schema list them.
pub const BOUNDS: [&Bound; 6] = [
    &HEADER_TIMEOUT,
    &BODY_TIMEOUT,
    &IDLE_TIMEOUT,
    &MAX_CONNECTIONS,
    &SHUTDOWN_TIMEOUT,
    &COMPILE_TIMEOUT,
];

/// Schema transform for the profile key of `BOUNDS[I]`: the description states what it
/// bounds, its default and its range; a count also gets `minimum` and `maximum`, so
/// editors and `validate` refuse what the daemon would.
pub fn bound_schema<const I: usize>(schema: &mut schemars::Schema) {
    describe_bound(BOUNDS[I], schema);
}

/// The schema of `b`'s profile key: its description with the default and the range, and
/// for a count `minimum` and `maximum`.
fn describe_bound(b: &Bound, schema: &mut schemars::Schema) {
    let (min, max) = b.kind.range();
    let about = b.about;
    let text = match b.kind {
        BoundKind::Seconds { .. } => format!(
            "{about}, e.g. \"{}\". Default \"{}\"; from \"{min}s\" to \"{max}s\".",
            b.default_text(),
            b.default_text()
        ),
        BoundKind::Count { .. } => {
            format!(
                "{about}. Default {}; from {min} to {max}.",
                b.default_text()
            )
        }
    };
    schema.insert("description".into(), text.into());
    if let BoundKind::Count { .. } = b.kind {
        schema.insert("minimum".into(), min.into());
        schema.insert("maximum".into(), max.into());
    }
}

/// A daemon feature that is on unless turned off: its profile key, the `serve` flag that
/// turns it off, and what it does.
#[derive(Debug, Clone, Copy)]
pub struct Switch {
    /// The profile key under `[inference]` (a boolean, default true).
    pub key: &'static str,
    /// The `serve` flag that turns it off, without the dashes.
    pub off_flag: &'static str,
    /// What it does, for `--help` and the schema.
    pub about: &'static str,
    /// What turning it off is for, for `--help` and the schema.
    pub off: &'static str,
}

/// Prefix reuse: each slot keeps its KV cells after a request, and the next request that
/// shares a prefix with them decodes only the rest.
pub const PROMPT_CACHE: Switch = Switch {
    key: "prompt_cache",
    off_flag: "no-prompt-cache",
    about: "Keep each slot's KV cache after a request and decode only what a new prompt does \
            not share with it (a conversation's earlier turns, a common system prompt)",
    off: "Turn it off where several people share the daemon and one must not learn, from \
          response times or `usage.prompt_tokens_details.cached_tokens`, what another \
          sent; a request can also opt out with \"cache_prompt\": false",
};

/// `[inference] prompt_cache`: what it does and its default, from [`PROMPT_CACHE`].
pub fn prompt_cache_schema(schema: &mut schemars::Schema) {
    let s = PROMPT_CACHE;
    schema.insert(
        "description".into(),
        format!(
            "{}. Default true; false starts the daemon with --{}. {}.",
            s.about, s.off_flag, s.off
        )
        .into(),
    );
}

/// Sequences one engine decodes together (continuous batching).
pub const SLOTS: Bound = Bound {
    key: "slots",
    flag: "slots",
    about: "Sequences decoded together (continuous batching)",
    kind: BoundKind::Count {
        default: 4,
        min: 1,
        max: 256,
    },
};

/// Context length of each slot, in tokens: the daemon's default, and the range of every
/// context a model may be loaded with (`serve`, `--models FILE`, `model load`, profiles).
/// The flag, the options file and the API say `context`, as a profile's models do
/// (`ctx` stays an alias); the profile's `[inference]` key is still `ctx`.
pub const CONTEXT: Bound = Bound {
    key: "ctx",
    flag: "context",
    about: "Context length of each slot, in tokens",
    kind: BoundKind::Count {
        default: 4096,
        min: 64,
        max: 1_048_576,
    },
};

/// Where the daemon listens unless told otherwise: loopback, where it needs no key.
pub const LISTEN: &str = "127.0.0.1:8080";

/// Layers offloaded to the GPU unless told otherwise: every layer the build can. A count
/// has no range of its own: one beyond the model's layers offloads them all.
pub const GPU_LAYERS: crate::model_options::GpuLayers = crate::model_options::GpuLayers::Auto;

/// Tokens per micro-batch: at least this many, and at least one per slot.
pub const BATCH: usize = 512;

/// The micro-batch for `slots` sequences decoded together.
pub fn batch_for(slots: usize) -> usize {
    BATCH.max(slots)
}

/// CPU threads for the engine (the default is the machine's physical cores).
pub const THREADS: std::ops::RangeInclusive<u64> = 1..=1024;
/// Most models loaded at once (the default is no limit).
pub const MAX_LOADED: std::ops::RangeInclusive<u64> = 1..=1024;
/// An idle TTL, in seconds (the default is never): zero would unload at once.
pub const TTL_SECS: std::ops::RangeInclusive<u64> = 1..=366 * 86_400;

/// Why `ttl` is outside [`TTL_SECS`], for the key or flag `what`; `None` when it is in.
pub fn ttl_problem(what: &str, ttl: std::time::Duration) -> Option<String> {
    if ttl.is_zero() {
        Some(format!(
            "{what} is zero, which would unload at once; leave it out to keep the model loaded"
        ))
    } else if !TTL_SECS.contains(&ttl.as_secs()) {
        Some(format!(
            "{what} is {}s, beyond the longest TTL, {}s; leave it out to keep the model loaded",
            ttl.as_secs(),
            TTL_SECS.end()
        ))
    } else {
        None
    }
}

/// `range` as clap's integer parsers take it.
pub fn clap_range(range: std::ops::RangeInclusive<u64>) -> std::ops::RangeInclusive<i64> {
    (*range.start() as i64)..=(*range.end() as i64)
}

/// Schema transform: `minimum` and `maximum` of a count from its range here.
pub fn range_schema(schema: &mut schemars::Schema, range: std::ops::RangeInclusive<u64>) {
    schema.insert("minimum".into(), (*range.start()).into());
    schema.insert("maximum".into(), (*range.end()).into());
}

/// Schema transforms for the profile's daemon options, each from its definition here.
pub fn slots_schema(schema: &mut schemars::Schema) {
    describe_bound(&SLOTS, schema);
}
/// `[inference] ctx`: the daemon's default and range.
pub fn ctx_schema(schema: &mut schemars::Schema) {
    describe_bound(&CONTEXT, schema);
}
/// A model's `context`: the range (its default is the daemon's `ctx`).
pub fn context_schema(schema: &mut schemars::Schema) {
    range_schema(schema, CONTEXT.kind.range_inclusive());
}
pub fn threads_schema(schema: &mut schemars::Schema) {
    range_schema(schema, THREADS);
}
pub fn max_loaded_schema(schema: &mut schemars::Schema) {
    range_schema(schema, MAX_LOADED);
}

/// Grammar compiles running at once, on threads of their own at the lowest CPU priority,
/// so plain requests and the engine keep their cores.
pub const COMPILE_CONCURRENCY: usize = 2;
/// Compiles that may wait for one of those; one more is a 429.
pub const COMPILE_QUEUE: usize = 8;
/// Memory the compiled grammars cached for one loaded model may hold.
pub const GRAMMAR_CACHE_BYTES: u64 = 128 << 20;
/// Descriptors the daemon needs beside one per connection: model files, the cache, the
/// listener, compile threads, the runtime.
pub const FD_HEADROOM: u64 = 1024;

/// The descriptor limit that fits `max_connections` (the unit's `LimitNOFILE`).
pub fn nofile_for(max_connections: u64) -> u64 {
    max_connections + FD_HEADROOM
}

/// The bounds one daemon runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerLimits {
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub shutdown_timeout: Duration,
    pub compile_timeout: Duration,
    pub compile_concurrency: usize,
    pub compile_queue: usize,
}

impl ServerLimits {
    /// The limits with each bound's value from `value` (seconds or a count), the rest
    /// at their defaults.
    pub fn from_bounds(value: impl Fn(&Bound) -> u64) -> Self {
        let secs = |b: &Bound| Duration::from_secs(value(b));
        ServerLimits {
            header_timeout: secs(&HEADER_TIMEOUT),
            body_timeout: secs(&BODY_TIMEOUT),
            idle_timeout: secs(&IDLE_TIMEOUT),
            max_connections: value(&MAX_CONNECTIONS) as usize,
            shutdown_timeout: secs(&SHUTDOWN_TIMEOUT),
            compile_timeout: secs(&COMPILE_TIMEOUT),
            compile_concurrency: COMPILE_CONCURRENCY,
            compile_queue: COMPILE_QUEUE,
        }
    }
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits::from_bounds(|b| b.kind.default_value())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_lie_in_their_ranges_and_the_head_deadline_is_at_most_30s() {
        for b in BOUNDS {
            let (min, max) = b.kind.range();
            let d = b.kind.default_value();
            assert!(min <= d && d <= max, "{}", b.key);
            assert_eq!(b.check(d), Ok(d));
            assert!(
                b.flag
                    .replace('-', "_")
                    .ends_with(&b.key.replace("grammar_", ""))
            );
        }
        assert!(HEADER_TIMEOUT.kind.default_value() <= 30);
        assert!(COMPILE_TIMEOUT.kind.default_value() <= 30);
    }

    #[test]
    fn out_of_range_names_the_key_range_and_value() {
        let e = HEADER_TIMEOUT.check(0).unwrap_err();
        assert_eq!(e, "header_timeout must be between 1s and 300s, not 0s");
        let e = MAX_CONNECTIONS.check(70_000).unwrap_err();
        assert!(e.contains("65536") && e.contains("70000"), "{e}");
    }
}
