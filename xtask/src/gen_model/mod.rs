//! `cargo xtask gen-model`: write a llama-architecture GGUF with random weights, or a LoRA
//! adapter for one, made by the project's one GGUF writer (`crates/gguf`,
//! [`sovereign_gguf::model`], [`sovereign_gguf::lora`]).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use sovereign_gguf::lora;
use sovereign_gguf::model as gguf;

const USAGE: &str =
    "cargo xtask gen-model --preset tiny|bench|vocab128k|tiny-lora --out FILE [--seed N]

Presets:
  tiny       a 1-3 MB model with a designed greedy path (the tests' and the demo's)
  bench      a model of about 250M parameters (the benchmark's)
  vocab128k  a small model with a 128k-token vocabulary (the mask benchmark's)
  tiny-lora  a LoRA adapter for the tiny model (every block weight; greedy text changes;
             --seed seeds the adapter's values: any seed fits any tiny model)

Examples:
  cargo xtask gen-model --preset tiny --out /tmp/tiny.gguf
  cargo xtask gen-model --preset tiny-lora --out /tmp/tiny-lora.gguf --seed 1
  cargo xtask gen-model --preset bench --out target/bench-f16.gguf --seed 7";

pub fn run(args: &[String]) -> Result<()> {
    let mut preset = None;
    let mut out = None;
    let mut seed = 42u64;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || {
            it.next()
                .with_context(|| format!("{a} needs a value\n\n{USAGE}"))
        };
        match a.as_str() {
            "--preset" => preset = Some(value()?.clone()),
            "--out" => out = Some(PathBuf::from(value()?)),
            "--seed" => {
                let v = value()?;
                seed = v
                    .parse()
                    .with_context(|| format!("--seed {v:?} is not a number"))?;
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => bail!("unknown argument {other:?}\n\n{USAGE}"),
        }
    }
    let preset = preset.with_context(|| format!("--preset is required\n\n{USAGE}"))?;
    let out = out.with_context(|| format!("--out is required\n\n{USAGE}"))?;
    if preset == "tiny-lora" {
        let lora = lora::LoraSpec::tiny(seed);
        write_atomically(&out, |file| {
            lora::write_adapter(&gguf::ModelSpec::tiny(seed), &lora, file)
        })?;
        let size = std::fs::metadata(&out)?.len();
        eprintln!(
            "gen-model: wrote {} (LoRA adapter for the tiny model: rank {}, alpha {}, {} weights, {:.1} MB, seed {seed})",
            out.display(),
            lora.rank,
            lora.alpha,
            lora.targets.len() * gguf::ModelSpec::tiny(seed).block_count as usize,
            size as f64 / 1e6
        );
        return Ok(());
    }
    let spec = gguf::ModelSpec::preset(&preset, seed).with_context(|| {
        format!("unknown preset {preset:?}: use tiny, bench, vocab128k or tiny-lora")
    })?;
    write(&spec, &out)?;
    let size = std::fs::metadata(&out)?.len();
    eprintln!(
        "gen-model: wrote {} ({} parameters, {:.1} MB, seed {seed})",
        out.display(),
        gguf::parameter_count(&spec),
        size as f64 / 1e6
    );
    Ok(())
}

/// Write the model atomically.
pub fn write(spec: &gguf::ModelSpec, out: &std::path::Path) -> Result<()> {
    write_atomically(out, |file| gguf::write_model(spec, file))
}

/// Write atomically: a temp file beside the target, renamed into place.
fn write_atomically(
    out: &std::path::Path,
    write: impl FnOnce(std::fs::File) -> std::io::Result<()>,
) -> Result<()> {
    let tmp = out.with_extension("gguf.partial");
    let file =
        std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    write(file).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, out).with_context(|| format!("renaming to {}", out.display()))?;
    Ok(())
}
