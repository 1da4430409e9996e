//! `cargo xtask gen-model`: write a llama-architecture GGUF with random weights, made by
//! the project's one GGUF writer (`crates/gguf`, [`sovereign_gguf::model`]).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use sovereign_gguf::model as gguf;

const USAGE: &str = "cargo xtask gen-model --preset tiny|bench|vocab128k --out FILE [--seed N]

Examples:
  cargo xtask gen-model --preset tiny --out /tmp/tiny.gguf
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
    let spec = gguf::ModelSpec::preset(&preset, seed)
        .with_context(|| format!("unknown preset {preset:?}: use tiny, bench or vocab128k"))?;
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

/// Write atomically: a temp file beside the target, renamed into place.
pub fn write(spec: &gguf::ModelSpec, out: &std::path::Path) -> Result<()> {
    let tmp = out.with_extension("gguf.partial");
    let file =
        std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    gguf::write_model(spec, file).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, out).with_context(|| format!("renaming to {}", out.display()))?;
    Ok(())
}
