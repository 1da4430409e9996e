//! LoRA adapters over a model: [`check`] reads an adapter's header and the model's with the
//! project's own bounded parser and refuses, in words a user can act on, an adapter
//! llama.cpp would refuse, crash on, or apply to the wrong model; [`load`] (with the
//! `engine` feature) hands llama.cpp only an adapter that check accepted.
//!
//! What makes a file a LoRA adapter llama.cpp reads on its own is
//! [`crate::gguf::lora::Adapter`]; what this module adds is whether it fits this model.
//! Several adapters are served as one, merged by [`crate::gguf::lora::merge`], since
//! llama.cpp's safe binding sets one adapter with one scale per context.
//!
//! [`load`] checks right before llama.cpp reads the file, as the engine parses a model's
//! header right before loading it: whatever path the adapter came by (a single one, a
//! merge), llama.cpp never sees one that [`check`] refuses for that model.

use std::collections::HashMap;
use std::path::Path;

use crate::gguf::lora::{Adapter, LoraPair, dims_text};
use crate::gguf::{Header, TensorInfo, parse_file};

/// What an accepted adapter is.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AdapterInfo {
    /// The architecture of the models it is for (`general.architecture`).
    pub architecture: String,
    /// `adapter.lora.alpha`; 0 when absent, in which case llama.cpp applies the adapter's
    /// scale as given instead of `scale * alpha / rank`.
    pub alpha: f32,
    /// Every distinct rank of its pairs, smallest first (one, for most adapters).
    pub ranks: Vec<u64>,
    /// Its `lora_a` and `lora_b` tensors: two per weight.
    pub tensor_count: usize,
    /// The model weights it changes.
    pub weights: usize,
}

/// Check that the adapter at `adapter_path` applies to the model at `model_path`: a LoRA
/// adapter llama.cpp accepts (see [`Adapter::from_header`]), for the model's architecture,
/// whose every pair names a weight matrix the model has, of the dimensions the pair is for.
/// Reads headers only.
pub fn check(model_path: &Path, adapter_path: &Path) -> Result<AdapterInfo, String> {
    let shown = adapter_path.display();
    let header =
        parse_file(adapter_path).map_err(|e| format!("{shown} is not a valid GGUF file: {e}"))?;
    let adapter = Adapter::from_header(&header)
        .map_err(|e| format!("{shown} cannot be used as a LoRA adapter: {e}"))?;
    let model = parse_file(model_path)
        .map_err(|e| format!("{} is not a valid GGUF file: {e}", model_path.display()))?;
    fits(&model, &adapter).map_err(|e| {
        format!(
            "the adapter {shown} does not fit the model {}: {e}",
            model_path.display()
        )
    })?;
    Ok(AdapterInfo {
        ranks: adapter.ranks(),
        architecture: adapter.architecture,
        alpha: adapter.alpha,
        tensor_count: adapter.pairs.len() * 2,
        weights: adapter.pairs.len(),
    })
}

/// The model's side of the check: its architecture, its weights and their dimensions.
fn fits(model: &Header, adapter: &Adapter) -> Result<(), String> {
    let arch = model
        .get("general.architecture")
        .and_then(|v| v.as_str())
        .ok_or("the model names no general.architecture")?;
    if arch != adapter.architecture {
        return Err(format!(
            "the adapter is for {:?} models; this model is {arch:?}",
            adapter.architecture
        ));
    }
    let weights: HashMap<&str, &TensorInfo> =
        model.tensors.iter().map(|t| (t.name.as_str(), t)).collect();
    let problems: Vec<String> = adapter
        .pairs
        .iter()
        .filter_map(|p| misfit(model, arch, weights.get(p.weight.as_str()).copied(), p))
        .collect();
    match problems.as_slice() {
        [] => Ok(()),
        [one] => Err(one.clone()),
        [first, rest @ ..] => Err(format!(
            "{first} (and {} more of its {} weights do not fit)",
            rest.len(),
            adapter.pairs.len()
        )),
    }
}

/// Why one pair does not fit the model, if it does not.
fn misfit(model: &Header, arch: &str, weight: Option<&TensorInfo>, p: &LoraPair) -> Option<String> {
    let hparam = |key: &str| model.get(&format!("{arch}.{key}")).and_then(|v| v.as_u64());
    let Some(weight) = weight else {
        let blocks = hparam("block_count")
            .map(|n| format!(" (it has {n} blocks)"))
            .unwrap_or_default();
        return Some(format!(
            "the adapter changes {}, which this model does not have{blocks}: use the adapter with the model it was made for",
            p.weight
        ));
    };
    if weight.dims.len() < 2 {
        return Some(format!(
            "the adapter changes {}, a vector in this model; LoRA changes weight matrices",
            p.weight
        ));
    }
    let want = p.weight_dims();
    let have = [weight.dims[0], weight.dims[1]];
    if want == have {
        return None;
    }
    let detail = format!(
        "{} is {} in the adapter and {} in this model",
        p.weight,
        dims_text(&want),
        dims_text(&have)
    );
    // Say which of the model's sizes differs where the model's dimension is one of them:
    // people know their model by its embedding length, not by a tensor's shape.
    let named = [
        ("embedding length", hparam("embedding_length")),
        ("feed-forward length", hparam("feed_forward_length")),
        ("vocabulary size", hparam("vocab_size")),
    ];
    let sized = (0..2).filter(|&k| want[k] != have[k]).find_map(|k| {
        named
            .iter()
            .find(|(_, n)| *n == Some(have[k]))
            .map(|(what, _)| (*what, want[k], have[k]))
    });
    Some(match sized {
        Some((what, theirs, ours)) => format!(
            "the adapter is for a model with {what} {theirs}; this model has {ours} ({detail}): use the adapter with the model it was made for"
        ),
        None => format!("{detail}: use the adapter with the model it was made for"),
    })
}

/// Load the adapter at `adapter_path` into `model` (loaded from `model_path`), after
/// [`check`] has accepted it: the one way the daemon hands llama.cpp an adapter. Load
/// adapters before making the model's contexts: llama.cpp sizes a context's compute graph
/// for the adapters its model holds when the context is made.
#[cfg(feature = "engine")]
pub fn load(
    model: &mut llama_cpp_2::model::LlamaModel,
    model_path: &Path,
    adapter_path: &Path,
) -> Result<(llama_cpp_2::model::LlamaLoraAdapter, AdapterInfo), String> {
    let info = check(model_path, adapter_path)?;
    let adapter = model.lora_adapter_init(adapter_path).map_err(|e| {
        format!(
            "llama.cpp could not load the adapter {}: {e}",
            adapter_path.display()
        )
    })?;
    Ok((adapter, info))
}

/// Models and adapters generated into a temporary folder, for both test modules.
#[cfg(test)]
// Tests build their models and adapters in temporary folders.
#[allow(clippy::disallowed_methods)]
mod fixture {
    use std::path::{Path, PathBuf};
    use std::sync::OnceLock;

    use crate::gguf::lora::{LoraSpec, write_adapter};
    use crate::gguf::model::{ModelSpec, write_model};

    fn dir() -> &'static Path {
        static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
        DIR.get_or_init(|| tempfile::tempdir().expect("temp dir"))
            .path()
    }

    /// A file in the folder, written by `write` once per process.
    fn file(name: &str, write: impl FnOnce(std::fs::File) -> std::io::Result<()>) -> PathBuf {
        static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _g = LOCK.lock().unwrap_or_else(|p| p.into_inner());
        let path = dir().join(name);
        if !path.exists() {
            write(std::fs::File::create(&path).expect("create")).expect("write");
        }
        path
    }

    /// A path in the folder for a test's own output.
    pub fn out(name: &str) -> PathBuf {
        dir().join(name)
    }

    /// The tiny model with its designed greedy path.
    pub fn tiny() -> PathBuf {
        file("tiny.gguf", |f| write_model(&ModelSpec::tiny(42), f))
    }

    /// The tiny model's adapter (rank 8, alpha 16, every block weight).
    pub fn lora_a() -> PathBuf {
        file("a.gguf", |f| {
            write_adapter(&ModelSpec::tiny(42), &LoraSpec::tiny(1), f)
        })
    }

    /// Another adapter for it: rank 4, alpha 4, only the block outputs.
    #[cfg(feature = "engine")]
    pub fn lora_b() -> PathBuf {
        let spec = LoraSpec {
            rank: 4,
            alpha: 4.0,
            targets: vec!["attn_output".into(), "ffn_down".into()],
            ..LoraSpec::tiny(2)
        };
        file("b.gguf", |f| write_adapter(&ModelSpec::tiny(42), &spec, f))
    }

    /// An adapter made for the benchmark model's shape (embedding length 1024).
    pub fn lora_for_bench() -> PathBuf {
        let spec = LoraSpec {
            rank: 2,
            targets: vec!["attn_q".into()],
            ..LoraSpec::tiny(3)
        };
        file("bench-lora.gguf", |f| {
            write_adapter(&ModelSpec::bench(1), &spec, f)
        })
    }

    /// An adapter for the tiny model's shape with two blocks more than it has.
    pub fn lora_for_deeper() -> PathBuf {
        let model = ModelSpec {
            block_count: 6,
            ..ModelSpec::tiny(42)
        };
        let spec = LoraSpec {
            targets: vec!["attn_v".into()],
            ..LoraSpec::tiny(4)
        };
        file("deeper-lora.gguf", |f| write_adapter(&model, &spec, f))
    }

    /// An adapter for another architecture, with the tiny model's shapes.
    pub fn lora_for_qwen2() -> PathBuf {
        use crate::gguf::write::{GgufBuilder, MetaValue};
        file("qwen2-lora.gguf", |mut f| {
            GgufBuilder::new()
                .kv("general.architecture", MetaValue::str("qwen2"))
                .kv("general.type", MetaValue::str("adapter"))
                .kv("adapter.type", MetaValue::str("lora"))
                .tensor_id("blk.0.attn_q.weight.lora_a", &[128, 2], 0)
                .tensor_id("blk.0.attn_q.weight.lora_b", &[2, 128], 0)
                .write_to(&mut f)
                .map(drop)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::fixture;
    use super::*;

    #[test]
    fn the_tiny_models_adapter_is_accepted_with_what_it_is() {
        let info = check(&fixture::tiny(), &fixture::lora_a()).unwrap();
        assert_eq!(
            info,
            AdapterInfo {
                architecture: "llama".into(),
                alpha: 16.0,
                ranks: vec![8],
                tensor_count: 56,
                weights: 28,
            }
        );
    }

    #[test]
    fn an_adapter_for_another_model_is_refused_with_the_size_that_differs() {
        let e = check(&fixture::tiny(), &fixture::lora_for_bench()).unwrap_err();
        assert!(
            e.contains("the adapter is for a model with embedding length 1024; this model has 128 (blk.0.attn_q.weight is 1024 x 1024 in the adapter and 128 x 128 in this model)"),
            "{e}"
        );
        assert!(
            e.contains("(and 19 more of its 20 weights do not fit)"),
            "{e}"
        );

        let e = check(&fixture::tiny(), &fixture::lora_for_deeper()).unwrap_err();
        assert!(
            e.contains("the adapter changes blk.4.attn_v.weight, which this model does not have (it has 4 blocks)"),
            "{e}"
        );

        let e = check(&fixture::tiny(), &fixture::lora_for_qwen2()).unwrap_err();
        assert!(
            e.contains("the adapter is for \"qwen2\" models; this model is \"llama\""),
            "{e}"
        );
    }

    #[test]
    fn a_model_given_as_an_adapter_is_refused() {
        let tiny = fixture::tiny();
        let e = check(&tiny, &tiny).unwrap_err();
        assert!(
            e.contains("cannot be used as a LoRA adapter: it is a model, not a LoRA adapter"),
            "{e}"
        );
        let missing = fixture::out("missing.gguf");
        let e = check(&tiny, &missing).unwrap_err();
        assert!(e.contains("missing.gguf is not a valid GGUF file"), "{e}");
    }
}

/// llama.cpp applies what [`check`] accepts, and merged adapters as their inputs.
#[cfg(all(test, feature = "engine"))]
mod applied {
    use std::num::NonZeroU32;
    use std::path::Path;

    use llama_cpp_2::context::params::LlamaContextParams;
    use llama_cpp_2::llama_batch::LlamaBatch;
    use llama_cpp_2::model::params::LlamaModelParams;
    use llama_cpp_2::model::{LlamaLoraAdapter, LlamaModel};
    use llama_cpp_2::sampling::LlamaSampler;

    use super::{fixture, load};
    use crate::gguf::lora::merge;

    /// A prompt ending off the tiny model's designed path, so that greedy decoding walks
    /// the path from its start.
    const PROMPT: &str = "hi";
    /// Tokens decoded greedily after the prompt.
    const GENERATE: usize = 24;

    /// What the tiny model writes without an adapter: the first [`GENERATE`] pieces of its
    /// designed path.
    fn base_text() -> String {
        crate::gguf::model::PATH[..GENERATE]
            .concat()
            .replace('\u{2581}', " ")
    }

    fn model() -> LlamaModel {
        let backend = crate::engine::backend().unwrap();
        LlamaModel::load_from_file(
            backend,
            fixture::tiny(),
            &LlamaModelParams::default().with_n_gpu_layers(0),
        )
        .unwrap()
    }

    /// What greedy decoding writes after [`PROMPT`] (until an end token or [`GENERATE`]
    /// tokens), and the logits it chose the first token from.
    fn greedy(
        model: &LlamaModel,
        adapter: Option<(&mut LlamaLoraAdapter, f32)>,
    ) -> (String, Vec<f32>) {
        let backend = crate::engine::backend().unwrap();
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(128))
            .with_n_batch(64)
            .with_n_ubatch(64)
            .with_n_threads(2)
            .with_n_threads_batch(2);
        let mut ctx = model.new_context(backend, params).unwrap();
        if let Some((adapter, scale)) = adapter {
            ctx.lora_adapter_set(adapter, scale).unwrap();
        }
        let vocab = model.vocab();
        let prompt = vocab.tokenize(PROMPT.as_bytes(), true, false);
        let mut batch = LlamaBatch::new(64, 1);
        for (i, t) in prompt.iter().enumerate() {
            batch
                .add(*t, i as i32, &[0], i + 1 == prompt.len())
                .unwrap();
        }
        ctx.decode(&mut batch).unwrap();
        let mut at = batch.n_tokens() - 1;
        let logits = ctx.get_logits_ith(at).to_vec();
        let mut sampler = LlamaSampler::greedy();
        let mut text = Vec::new();
        for pos in prompt.len()..prompt.len() + GENERATE {
            let t = sampler.sample(&ctx, at);
            if vocab.is_eog(t) {
                break;
            }
            text.extend(vocab.token_to_piece(t, false, None));
            batch.clear();
            batch.add(t, pos as i32, &[0], true).unwrap();
            ctx.decode(&mut batch).unwrap();
            at = 0;
        }
        (String::from_utf8_lossy(&text).into_owned(), logits)
    }

    fn largest_difference(x: &[f32], y: &[f32]) -> f32 {
        x.iter()
            .zip(y)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max)
    }

    fn loaded(model: &mut LlamaModel, adapter: &Path) -> LlamaLoraAdapter {
        load(model, &fixture::tiny(), adapter).unwrap().0
    }

    #[test]
    fn an_adapter_changes_greedy_text_at_scale_1_and_nothing_at_0() {
        let mut model = model();
        let mut a = loaded(&mut model, &fixture::lora_a());
        let (base, base_logits) = greedy(&model, None);
        let (zero, zero_logits) = greedy(&model, Some((&mut a, 0.0)));
        let (one, one_logits) = greedy(&model, Some((&mut a, 1.0)));
        eprintln!("base: {base:?}\nscale 0: {zero:?}\nscale 1: {one:?}");
        assert_eq!(base, base_text());
        assert_eq!(zero, base);
        assert_eq!(zero_logits, base_logits);
        assert_ne!(one, base);
        assert!(largest_difference(&one_logits, &base_logits) > 1.0);
    }

    #[test]
    fn a_merged_adapter_applies_what_its_inputs_do() {
        let (a, b) = (fixture::lora_a(), fixture::lora_b());
        let merges = [
            ("a-at-1", vec![(a.clone(), 1.0)]),
            ("a-at-half-twice", vec![(a.clone(), 0.5), (a.clone(), 0.5)]),
            ("a-at-1-b-at-0", vec![(a.clone(), 1.0), (b.clone(), 0.0)]),
        ];
        for (name, inputs) in &merges {
            merge(inputs, &fixture::out(&format!("{name}.gguf"))).unwrap();
        }
        let mut model = model();
        let mut alone = loaded(&mut model, &a);
        let mut merged: Vec<_> = merges
            .iter()
            .map(|(name, _)| loaded(&mut model, &fixture::out(&format!("{name}.gguf"))))
            .collect();
        let (want, want_logits) = greedy(&model, Some((&mut alone, 1.0)));
        let (base, _) = greedy(&model, None);
        assert_ne!(want, base);
        for ((name, _), adapter) in merges.iter().zip(&mut merged) {
            let (got, logits) = greedy(&model, Some((adapter, 1.0)));
            let diff = largest_difference(&logits, &want_logits);
            eprintln!("{name}: {got:?} (logits within {diff})");
            assert_eq!(got, want, "{name}");
            assert!(diff < 1e-3, "{name}: logits differ by {diff}");
        }
        // The comparison tells adapters apart: with B's terms at scale 1 the merge differs.
        let both = fixture::out("a-and-b.gguf");
        merge(&[(a, 1.0), (b, 1.0)], &both).unwrap();
        let mut both = loaded(&mut model, &both);
        let (got, logits) = greedy(&model, Some((&mut both, 1.0)));
        eprintln!("a-and-b: {got:?}");
        assert_ne!(got, want);
        assert!(largest_difference(&logits, &want_logits) > 1.0);
    }

    #[test]
    fn llama_cpp_is_never_handed_an_adapter_check_refused() {
        let mut model = model();
        for refused in [fixture::lora_for_bench(), fixture::tiny()] {
            let checked = super::check(&fixture::tiny(), &refused).unwrap_err();
            let loaded = load(&mut model, &fixture::tiny(), &refused).err();
            assert_eq!(loaded, Some(checked), "{}", refused.display());
        }
        // The model is untouched: it decodes as it did.
        let (text, _) = greedy(&model, None);
        assert_eq!(text, base_text());
    }
}
