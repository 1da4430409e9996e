//! `cargo xtask bench inference reuse` (and part of `bench inference`): prefix reuse on the
//! Q4_0 bench model, each measurement with reuse on and off in the same run, alternating:
//!
//! - a 6-turn chat whose history grows to about 1,500 tokens: time to first token of each
//!   turn (the same messages both ways; how many greedy answers came out equal is counted);
//! - 8 concurrent requests sharing a 1,000-token system prompt with short distinct
//!   questions, one token each: the time until all 8 have answered, which is their prompt
//!   time, and the prompt tokens the daemon decoded (`/metrics`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use super::inference::{KEY, start_daemon_with};

/// Slot context: room for the whole conversation and its answer.
const CTX: usize = 2048;
/// Rounds; each has its own texts, so nothing is reused from an earlier round.
const ROUNDS: u64 = 3;
const TURNS: usize = 6;
/// Tokens of each answer in the conversation.
const ANSWER: usize = 48;

/// What the benchmark measured, per round.
#[derive(Default)]
pub(super) struct Reuse {
    /// `[round][turn]`: (prompt tokens, cached tokens with reuse, TTFT ms on, TTFT ms off).
    turns: Vec<Vec<(u64, u64, f64, f64)>>,
    /// Turns whose answer with reuse was the answer without, and turns in all.
    same: (usize, usize),
    /// Per round: (seconds on, seconds off, prompt tokens decoded on, decoded off,
    /// prompt tokens of one request).
    shared: Vec<(f64, f64, f64, f64, u64)>,
}

/// `n` words from the bench model's vocabulary, different for each `seed`.
fn words(seed: u64, n: usize) -> String {
    const W: &[&str] = &[
        "the", "quiet", "river", "green", "stone", "light", "local", "machine", "data", "time",
        "server", "model", "token", "stream", "reply", "text", "hello", "world",
    ];
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            W[(x % W.len() as u64) as usize]
        })
        .collect::<Vec<_>>()
        .join(" ")
}

pub(super) fn run(bin: &Path, model: &Path) -> Result<Reuse> {
    eprintln!(
        "==> Q4_0: prefix reuse, {ROUNDS} rounds of a {TURNS}-turn chat and 8 requests sharing a \
         system prompt, each with reuse on and off"
    );
    let (port, _daemon) = start_daemon_with(bin, model, CTX)?;
    // Warm-up: the weights paged in.
    chat(
        port,
        &json!([{"role": "user", "content": "hello"}]),
        false,
        4,
    )?;
    let mut out = Reuse::default();
    for round in 0..ROUNDS {
        let mut messages = vec![
            json!({"role": "system", "content": words(round * 1000, 820)}),
            json!({"role": "user", "content": words(round * 1000 + 1, 60)}),
        ];
        let mut turns = Vec::new();
        for turn in 0..TURNS {
            let body = Value::Array(messages.clone());
            // Which goes first alternates, so an order effect cancels out.
            let (on, off) = if (round as usize + turn).is_multiple_of(2) {
                let on = chat(port, &body, true, ANSWER)?;
                (on, chat(port, &body, false, ANSWER)?)
            } else {
                let off = chat(port, &body, false, ANSWER)?;
                (chat(port, &body, true, ANSWER)?, off)
            };
            out.same.1 += 1;
            if on.text == off.text {
                out.same.0 += 1;
            } else {
                eprintln!("   turn {} answered differently with reuse", turn + 1);
            }
            eprintln!(
                "   round {} turn {}: {} prompt tokens, {} cached; TTFT {:.0} ms with reuse, {:.0} ms without",
                round + 1,
                turn + 1,
                on.prompt,
                on.cached,
                on.ttft_ms,
                off.ttft_ms
            );
            turns.push((on.prompt, on.cached, on.ttft_ms, off.ttft_ms));
            messages.push(json!({"role": "assistant", "content": on.text}));
            messages.push(
                json!({"role": "user", "content": words(round * 1000 + 10 + turn as u64, 60)}),
            );
        }
        out.turns.push(turns);
        let mut shared = [(0.0, 0.0); 2];
        let mut prompt = 0;
        for k in 0..2 {
            // Alternate which goes first; each has a system prompt of its own.
            let on = (round as usize + k).is_multiple_of(2);
            let system = words(round * 1000 + 500 + k as u64, 960);
            let before = metric(port, "sovereign_prompt_tokens_total")?;
            let start = Instant::now();
            let answers: Vec<Answer> = std::thread::scope(|s| {
                let hs: Vec<_> = (0..8)
                    .map(|q| {
                        let system = &system;
                        s.spawn(move || {
                            let body = json!([
                                {"role": "system", "content": system},
                                {"role": "user", "content": format!("question {q}: {}", words(q + 77, 4))}
                            ]);
                            chat(port, &body, on, 1)
                        })
                    })
                    .collect();
                hs.into_iter()
                    .map(|h| h.join().expect("request thread"))
                    .collect::<Result<Vec<_>>>()
            })?;
            let secs = start.elapsed().as_secs_f64();
            let decoded = metric(port, "sovereign_prompt_tokens_total")? - before;
            prompt = answers[0].prompt;
            eprintln!(
                "   round {} shared prefix, reuse {}: 8 x {} prompt tokens in {secs:.2} s, {decoded} decoded, {} cached",
                round + 1,
                if on { "on" } else { "off" },
                prompt,
                answers.iter().map(|a| a.cached).sum::<u64>()
            );
            shared[usize::from(!on)] = (secs, decoded);
        }
        out.shared
            .push((shared[0].0, shared[1].0, shared[0].1, shared[1].1, prompt));
    }
    Ok(out)
}

/// The Markdown tables for BENCHMARKS.md: medians over the rounds.
pub(super) fn table(r: &Reuse) -> String {
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let mut out = String::from(
        "| turn | prompt tokens | cached with reuse | TTFT ms, reuse on | TTFT ms, reuse off | on / off |\n|---|---|---|---|---|---|\n",
    );
    let (mut on_sum, mut off_sum) = (0.0, 0.0);
    for turn in 0..TURNS {
        let col = |f: fn(&(u64, u64, f64, f64)) -> f64| {
            median(r.turns.iter().map(|t| f(&t[turn])).collect())
        };
        let (on, off) = (col(|t| t.2), col(|t| t.3));
        if turn > 0 {
            on_sum += on;
            off_sum += off;
        }
        out.push_str(&format!(
            "| {} | {:.0} | {:.0} | {on:.0} | {off:.0} | {:.2} |\n",
            turn + 1,
            col(|t| t.0 as f64),
            col(|t| t.1 as f64),
            on / off
        ));
    }
    out.push_str(&format!(
        "| 2-6 | | | {on_sum:.0} | {off_sum:.0} | {:.2} |\n\nGreedy answers with reuse equal to those without: {} of {} turns.\n\n",
        on_sum / off_sum,
        r.same.0,
        r.same.1
    ));
    let col = |f: fn(&(f64, f64, f64, f64, u64)) -> f64| median(r.shared.iter().map(f).collect());
    let (on, off) = (col(|s| s.0), col(|s| s.1));
    out.push_str(&format!(
        "| 8 requests sharing a system prompt | prompt tokens each | decoded, reuse on | decoded, reuse off | seconds, reuse on | seconds, reuse off | on / off |\n|---|---|---|---|---|---|---|\n| one token each | {:.0} | {:.0} | {:.0} | {on:.2} | {off:.2} | {:.2} |\n",
        col(|s| s.4 as f64),
        col(|s| s.2),
        col(|s| s.3),
        on / off
    ));
    out
}

/// One streamed answer.
struct Answer {
    ttft_ms: f64,
    text: String,
    prompt: u64,
    cached: u64,
}

/// A greedy streamed chat request of `max_tokens`, with reuse `on` or opted out.
fn chat(port: u16, messages: &Value, on: bool, max_tokens: usize) -> Result<Answer> {
    let body = json!({"model": "m", "messages": messages, "max_tokens": max_tokens,
        "temperature": 0, "stream": true, "stream_options": {"include_usage": true},
        "cache_prompt": on})
    .to_string();
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    let start = Instant::now();
    write!(
        s,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {KEY}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut r = BufReader::new(s);
    let mut line = String::new();
    let (mut first, mut text, mut usage) = (None, String::new(), Value::Null);
    while r.read_line(&mut line)? > 0 {
        if let Some(data) = line
            .trim_end()
            .strip_prefix("data: ")
            .filter(|d| *d != "[DONE]")
        {
            let v: Value = serde_json::from_str(data)?;
            // The first chunk carries only the role: the first token is the first text.
            if let Some(t) = v["choices"][0]["delta"]["content"]
                .as_str()
                .filter(|t| !t.is_empty())
            {
                first.get_or_insert_with(Instant::now);
                text.push_str(t);
            }
            if !v["usage"].is_null() {
                usage = v["usage"].clone();
            }
            if v.get("error").is_some() {
                bail!("the daemon failed a request: {data}");
            }
        }
        line.clear();
    }
    let first = first.context("the stream produced no text")?;
    Ok(Answer {
        ttft_ms: first.duration_since(start).as_secs_f64() * 1e3,
        text,
        prompt: usage["prompt_tokens"].as_u64().context("no usage chunk")?,
        cached: usage["prompt_tokens_details"]["cached_tokens"]
            .as_u64()
            .context("no cached_tokens in usage")?,
    })
}

/// A counter from `/metrics`.
fn metric(port: u16, name: &str) -> Result<f64> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {KEY}\r\n\r\n"
    )?;
    let mut r = String::new();
    s.read_to_string(&mut r)?;
    r.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .with_context(|| format!("{name} is not in /metrics"))
}
