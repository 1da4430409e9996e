//! Generated LoRA adapters for [`crate::model`]'s models: seeded random low-rank F32
//! matrices over chosen block weights, for `cargo xtask gen-model --preset tiny-lora` and
//! the inference tests (applying, checking, merging adapters without a trained one).

use std::io::{self, Write};

use super::{KEY_ADAPTER_TYPE, KEY_ALPHA, KEY_ARCHITECTURE, KEY_GENERAL_TYPE, SUFFIX_A, SUFFIX_B};
use crate::model::{BLOCK_MATRICES, ModelSpec, SplitMix64};
use crate::write::{GgufBuilder, MetaValue};

/// ggml's type id of F32, the only type generated adapters hold.
const F32: u32 = 0;

/// What adapter to generate for a model.
#[derive(Debug, Clone)]
pub struct LoraSpec {
    /// Name written to `general.name`.
    pub name: String,
    /// Rank of every pair.
    pub rank: u32,
    /// `adapter.lora.alpha`: applied at scale 1 the change is `alpha / rank · B·A`.
    pub alpha: f32,
    /// Seed of the values.
    pub seed: u64,
    /// The block weights it changes, by name (see [`BLOCK_MATRICES`]), in every block.
    pub targets: Vec<String>,
    /// How strong the change is: `A`'s entries lie in `±1/sqrt(n_in)` (so `A·x` keeps the
    /// size of `x`), `B`'s in `±gain/sqrt(rank)`.
    pub gain: f32,
}

impl LoraSpec {
    /// The adapter for [`ModelSpec::tiny`]: rank 8, alpha 16 (so llama.cpp's alpha/rank
    /// factor is 2, not 1), on every block weight. The tiny model's designed greedy path runs
    /// through blocks whose outputs (`attn_output`, `ffn_down`) are zero; the adapter makes
    /// them large enough that the blocks' output outweighs the token embedding the path is
    /// designed on, so greedy text changes with the adapter at scale 1 (at gain 1 it does
    /// not: the path's margin absorbs the change; at 6 the text changes from its first
    /// token and does not fall into a loop, so it tells adapters apart).
    pub fn tiny(seed: u64) -> Self {
        LoraSpec {
            name: "sovereign-tiny-lora".into(),
            rank: 8,
            alpha: 16.0,
            seed,
            targets: BLOCK_MATRICES.iter().map(|s| s.to_string()).collect(),
            gain: 6.0,
        }
    }
}

/// Write the adapter `lora` for models shaped as `model` as GGUF v3 to `out`.
pub fn write_adapter<W: Write>(model: &ModelSpec, lora: &LoraSpec, out: W) -> io::Result<()> {
    let invalid = |msg: String| io::Error::new(io::ErrorKind::InvalidInput, msg);
    if lora.rank == 0 {
        return Err(invalid("a LoRA rank is at least 1".into()));
    }
    let mut shapes = Vec::new();
    for target in &lora.targets {
        let dims = model.block_matrix_dims(target).ok_or_else(|| {
            invalid(format!(
                "{target:?} is not a block weight; choose from {}",
                BLOCK_MATRICES.join(", ")
            ))
        })?;
        shapes.push((target.as_str(), dims));
    }
    let rank = u64::from(lora.rank);
    let mut file = GgufBuilder::new()
        .kv(KEY_ARCHITECTURE, MetaValue::str("llama"))
        .kv("general.name", MetaValue::Str(lora.name.clone()))
        .kv(KEY_GENERAL_TYPE, MetaValue::str("adapter"))
        .kv(KEY_ADAPTER_TYPE, MetaValue::str("lora"))
        .kv(KEY_ALPHA, MetaValue::F32(lora.alpha));
    // (n_in, values' bound) of each tensor in file order.
    let mut fills: Vec<(u64, f32)> = Vec::new();
    for block in 0..model.block_count {
        for (target, [n_in, n_out]) in &shapes {
            let weight = format!("blk.{block}.{target}.weight");
            file = file
                .tensor_id(&format!("{weight}{SUFFIX_A}"), &[*n_in, rank], F32)
                .tensor_id(&format!("{weight}{SUFFIX_B}"), &[rank, *n_out], F32);
            fills.push((n_in * rank, 1.0 / (*n_in as f32).sqrt()));
            fills.push((rank * n_out, lora.gain / (rank as f32).sqrt()));
        }
    }
    let mut out = io::BufWriter::new(out);
    let mut rng = SplitMix64::new(lora.seed ^ 0x10a4_ada9_7e55_0001);
    let mut buf: Vec<u8> = Vec::new();
    file.write_with(&mut out, |i, w| {
        let Some(&(n, bound)) = fills.get(i) else {
            return Ok(());
        };
        buf.clear();
        for _ in 0..n {
            buf.extend_from_slice(&(rng.next_signed() * bound).to_le_bytes());
        }
        w.write_all(&buf)
    })?;
    out.flush()
}
