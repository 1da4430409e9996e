//! `sovereign model quantize`: Quantize a GGUF model with llama.cpp.

use crate::cli::{CmdResult, Output};

const EXAMPLES: &str = "\
Examples:
  sovereign model quantize model-f16.gguf model-q4_k_m.gguf --type q4_k_m
  sovereign model quantize model-f16.gguf model-q8_0.gguf --type q8_0 --json";

/// Quantize a GGUF model with llama.cpp.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// Input GGUF (F32 or F16 weights).
    pub input: std::path::PathBuf,
    /// Output GGUF (written beside as .partial, renamed when complete).
    pub output: std::path::PathBuf,
    /// Quantization type.
    #[arg(long = "type", value_enum)]
    pub kind: crate::inference::quantize::QuantType,
    /// Threads (default: all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Report the result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[cfg(feature = "engine")]
pub fn run(args: Args, out: &Output) -> CmdResult {
    use std::time::{Duration, Instant};
    if !args.input.is_file() {
        return Err(miette::miette!("{}: no such file", args.input.display()));
    }
    let in_size = std::fs::metadata(&args.input)
        .map_err(|e| miette::miette!("{}: {e}", args.input.display()))?
        .len();
    let start = Instant::now();
    let (input, output, kind, threads) = (
        args.input.clone(),
        args.output.clone(),
        args.kind,
        args.threads,
    );
    let worker = std::thread::spawn(move || {
        crate::inference::quantize::quantize(&input, &output, kind, threads)
    });
    // llama.cpp's quantizer has no progress callback: the line shows elapsed time and
    // the bytes written so far.
    let partial = args.output.with_extension("gguf.partial");
    let bar = indicatif::ProgressBar::new_spinner();
    if out.quiet {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    while !worker.is_finished() {
        let written = std::fs::metadata(&partial).map_or(0, |m| m.len());
        bar.set_message(format!(
            "quantizing {} to {}: {:.1} MB written, {:.0}s",
            args.input.display(),
            args.kind.name(),
            written as f64 / 1e6,
            start.elapsed().as_secs_f64()
        ));
        bar.tick();
        std::thread::sleep(Duration::from_millis(200));
    }
    bar.finish_and_clear();
    worker
        .join()
        .map_err(|_| miette::miette!("the quantizer thread panicked"))?
        .map_err(|e| miette::miette!("{e}"))?;
    let out_size = std::fs::metadata(&args.output)
        .map_err(|e| miette::miette!("{}: {e}", args.output.display()))?
        .len();
    let secs = start.elapsed().as_secs_f64();
    if args.json {
        out.json(&serde_json::json!({
            "input": args.input, "output": args.output, "type": args.kind.name(),
            "input_bytes": in_size, "output_bytes": out_size, "seconds": secs,
        }))?;
    }
    out.say(format!(
        "quantized {} ({:.1} MB) to {} ({:.1} MB) in {secs:.1}s",
        args.input.display(),
        in_size as f64 / 1e6,
        args.output.display(),
        out_size as f64 / 1e6
    ));
    Ok(crate::cli::exit::OK)
}

#[cfg(not(feature = "engine"))]
pub fn run(_args: Args, _out: &Output) -> CmdResult {
    Err(miette::miette!(
        help = "rebuild with the default `engine` feature",
        "this sovereign was built without the llama.cpp engine"
    ))
}
