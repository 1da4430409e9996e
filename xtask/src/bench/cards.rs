//! `cargo xtask bench inference cards` (and part of `bench inference`): Cards with LoRA
//! adapters on the Q4_0 bench model, in one daemon and one run, alternating: one stream
//! through a Card with an adapter against one on its base alone (the same engine), and four
//! streams split over two Cards with different adapters (two adapter sets taking turns
//! between decode steps) against four through one Card.

use std::ffi::OsString;
use std::path::Path;
use std::process::Command;

use anyhow::{Result, bail};
use serde_json::json;

use super::fleet::sha256;
use super::inference::{concurrent, start_daemon_args, stream_with};
use crate::project_root;

/// Rounds; every figure is the median of its rounds.
const ROUNDS: usize = 5;
/// The adapters' rank: a task adapter's usual size for a model of this width.
const RANK: u32 = 16;

/// Medians over the rounds, generated tokens/s.
pub(super) struct Cards {
    base_one: f64,
    card_one: f64,
    four_one_set: f64,
    four_two_sets: f64,
}

pub(super) fn run(bin: &Path, q4: &Path) -> Result<Cards> {
    eprintln!(
        "==> Q4_0: Cards with rank-{RANK} adapters, {ROUNDS} rounds: one stream with an adapter \
         and without, four streams over two adapter sets and over one"
    );
    let dir = project_root().join("target/bench-cards");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let root = dir.join("root");
    let pull = |file: &Path, name: &str| -> Result<String> {
        let st = Command::new(bin)
            .arg("--root")
            .arg(&root)
            .args(["model", "pull"])
            .arg(file)
            .args(["--name", name])
            .output()?;
        if !st.status.success() {
            bail!("model pull {name}: {}", String::from_utf8_lossy(&st.stderr));
        }
        sha256(file)
    };
    let base_sha = pull(q4, "base")?;
    let mut cards: Vec<OsString> = Vec::new();
    for (name, seed) in [("a", 1), ("b", 2)] {
        let file = dir.join(format!("lora-{name}.gguf"));
        // The common shape of a task adapter: the attention's query and value projections.
        let spec = sovereign_gguf::lora::LoraSpec {
            rank: RANK,
            alpha: RANK as f32,
            gain: 1.0,
            targets: vec!["attn_q".into(), "attn_v".into()],
            ..sovereign_gguf::lora::LoraSpec::tiny(seed)
        };
        sovereign_gguf::lora::write_adapter(
            &sovereign_gguf::model::ModelSpec::bench(42),
            &spec,
            std::fs::File::create(&file)?,
        )?;
        pull(&file, &format!("lora-{name}"))?;
        let card = dir.join(format!("{name}.json"));
        std::fs::write(
            &card,
            json!({"base": {"model": "base", "sha256": base_sha},
                   "adapters": [{"model": format!("lora-{name}")}]})
            .to_string(),
        )?;
        cards.push("--card".into());
        cards.push(format!("{name}={}", card.display()).into());
    }
    let mut extra: Vec<OsString> = vec!["--root".into(), root.clone().into()];
    extra.extend(cards);
    let (port, _daemon) = start_daemon_args(bin, q4, 1024, &extra)?;
    let on = |model: &str| json!({"model": model});
    // Warm-up: both engines' weights paged in, the adapters applied once.
    stream_with(port, &on("base"))?;
    stream_with(port, &on("a"))?;
    let (mut base_one, mut card_one, mut one_set, mut two_sets) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..ROUNDS {
        for k in 0..4 {
            match (i + k) % 4 {
                0 => base_one.push(stream_with(port, &on("base"))?.gen_tps),
                1 => card_one.push(stream_with(port, &on("a"))?.gen_tps),
                2 => one_set.push(concurrent(port, &[on("a"), on("a"), on("a"), on("a")])?),
                _ => two_sets.push(concurrent(port, &[on("a"), on("b"), on("a"), on("b")])?),
            }
        }
        eprintln!(
            "   base {:.2} tok/s, Card with an adapter {:.2}; 4 streams on one set {:.2}, on two sets {:.2}",
            base_one[i], card_one[i], one_set[i], two_sets[i]
        );
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    Ok(Cards {
        base_one: median(base_one),
        card_one: median(card_one),
        four_one_set: median(one_set),
        four_two_sets: median(two_sets),
    })
}

/// The Markdown table for BENCHMARKS.md.
pub(super) fn table(c: &Cards) -> String {
    format!(
        "| Q4_0, generated tok/s | base alone | through a Card (rank-{RANK} adapter on attn_q, attn_v) | Card / base | 4 streams, one adapter set | 4 streams, two sets | two / one |\n|---|---|---|---|---|---|---|\n| median of {ROUNDS} rounds | {:.2} | {:.2} | {:.3} | {:.2} | {:.2} | {:.3} |\n",
        c.base_one,
        c.card_one,
        c.card_one / c.base_one,
        c.four_one_set,
        c.four_two_sets,
        c.four_two_sets / c.four_one_set
    )
}
