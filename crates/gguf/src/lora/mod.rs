//! LoRA adapters in GGUF, as llama.cpp reads them (`llama_adapter_lora_init_impl` in
//! llama.cpp's `src/llama-adapter.cpp`): what makes a file an adapter llama.cpp accepts on
//! its own ([`Adapter::from_header`]), generated adapters for [`crate::model`]'s models
//! ([`write_adapter`]) and one adapter merged from several ([`merge`]).
//!
//! The format: `general.type = "adapter"`, `adapter.type = "lora"`, `general.architecture`
//! equal to the base model's, an optional `adapter.lora.alpha` (f32), and for each weight
//! `W` it changes two tensors `W.lora_a` and `W.lora_b`. With `W` of dimensions
//! `[n_in, n_out]` (innermost first), `lora_a` is `[n_in, rank]` and `lora_b` is
//! `[rank, n_out]`; llama.cpp adds `scale * B·(A·x)` to `W·x`, with
//! `scale = adapter_scale * alpha / rank` ([`effective_scale`]), `rank` being `lora_b`'s
//! first dimension. `token_embd.weight` is the exception: its `lora_a` is `[rank, n_vocab]`
//! and its `lora_b` `[rank, n_embd]` (llama.cpp looks rows of `A` up by token id).
//!
//! The header checks here are the ones llama.cpp makes plus the ones it does not make but
//! would crash on (a key of the wrong type is an assertion in its GGUF reader, a token
//! embedding pair of unequal ranks one in its matrix product): a file these accept, whose
//! weights a model has with these dimensions, loads and runs.

mod generate;
mod merge;

pub use generate::{LoraSpec, write_adapter};
pub use merge::{MAX_MERGE_INPUTS, MAX_MERGED_BYTES, Merged, merge};

use std::collections::HashMap;

use crate::parse::{Header, TensorInfo, Value};

/// `general.type`: `adapter` for an adapter (llama.cpp refuses any other value).
pub const KEY_GENERAL_TYPE: &str = "general.type";
/// `general.architecture`: must be the base model's.
pub const KEY_ARCHITECTURE: &str = "general.architecture";
/// `adapter.type`: `lora` (llama.cpp reads no other kind from a file).
pub const KEY_ADAPTER_TYPE: &str = "adapter.type";
/// `adapter.lora.alpha` (f32); absent or 0, llama.cpp applies the adapter's scale as given.
pub const KEY_ALPHA: &str = "adapter.lora.alpha";
/// Tokens after which an "activated LoRA" applies (array of u32); absent for plain LoRA.
pub const KEY_ALORA_INVOCATION: &str = "adapter.alora.invocation_tokens";

/// Suffix of the down-projection tensor of a pair.
pub const SUFFIX_A: &str = ".lora_a";
/// Suffix of the up-projection tensor of a pair.
pub const SUFFIX_B: &str = ".lora_b";
/// llama.cpp skips tensors with this suffix in an adapter (norm vectors it does not apply).
const SKIPPED_SUFFIX: &str = "_norm.weight";
/// The weight whose LoRA pair llama.cpp lays out the other way round.
const TOKEN_EMBD: &str = "token_embd.weight";

/// Element types of lora tensors: those llama.cpp's converter writes (`--outtype`), all of
/// which every backend multiplies. Others (integer, F64, exotic quantizations) would be
/// loaded and then fail or abort in the matrix product.
pub const LORA_TYPES: &[&str] = &["F32", "F16", "BF16", "Q8_0"];

/// The scale llama.cpp multiplies a weight's `B·(A·x)` by, for an adapter applied at
/// `adapter_scale` (`llama_adapter_lora_weight::get_scale`): an alpha of 0 (or none)
/// leaves the scale as given.
pub fn effective_scale(alpha: f32, rank: u64, adapter_scale: f32) -> f32 {
    if alpha == 0.0 {
        adapter_scale
    } else {
        adapter_scale * alpha / rank as f32
    }
}

/// One weight an adapter changes: its two tensors, checked against each other.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraPair {
    /// The base model's tensor name (`blk.0.attn_q.weight`).
    pub weight: String,
    pub a: TensorInfo,
    pub b: TensorInfo,
}

impl LoraPair {
    /// The rank: `lora_b`'s first dimension, as llama.cpp scales by it.
    pub fn rank(&self) -> u64 {
        ne(&self.b, 0)
    }

    /// Whether this pair uses the token embedding's transposed layout.
    pub fn is_token_embd(&self) -> bool {
        self.weight.ends_with(TOKEN_EMBD)
    }

    /// The dimensions `[ne0, ne1]` the base weight must have for llama.cpp to accept the
    /// pair (its shape check in `llama_adapter_lora_init_impl`).
    pub fn weight_dims(&self) -> [u64; 2] {
        if self.is_token_embd() {
            [ne(&self.b, 1), ne(&self.a, 1)]
        } else {
            [ne(&self.a, 0), ne(&self.b, 1)]
        }
    }
}

/// A file's header read as a LoRA adapter.
#[derive(Debug, Clone, PartialEq)]
pub struct Adapter {
    /// `general.architecture`.
    pub architecture: String,
    /// `adapter.lora.alpha`; 0 when absent, as llama.cpp reads it.
    pub alpha: f32,
    /// Number of invocation tokens of an activated LoRA (0 for a plain one).
    pub invocation_tokens: u64,
    /// The weights it changes, in file order of their first tensor.
    pub pairs: Vec<LoraPair>,
}

/// ggml's dimension `i` (1 beyond the stored ones).
fn ne(t: &TensorInfo, i: usize) -> u64 {
    t.dims.get(i).copied().unwrap_or(1)
}

/// Render dimensions as `128 x 384`.
pub fn dims_text(dims: &[u64]) -> String {
    dims.iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(" x ")
}

impl Adapter {
    /// Read a validated header as an adapter, or say in words why llama.cpp would refuse
    /// it (or crash on it). The reason does not name the file; the caller does.
    pub fn from_header(header: &Header) -> Result<Adapter, String> {
        let general_type = string_key(header, KEY_GENERAL_TYPE)?;
        match general_type {
            Some("adapter") => {}
            Some(other) => {
                return Err(format!(
                    "it is not a LoRA adapter: its {KEY_GENERAL_TYPE} is {other:?}, not \"adapter\""
                ));
            }
            None if header.tensors.iter().any(|t| t.name == "token_embd.weight") => {
                return Err(format!(
                    "it is a model, not a LoRA adapter (it has no {KEY_GENERAL_TYPE} = \"adapter\" and holds a whole model's weights)"
                ));
            }
            None => {
                return Err(format!(
                    "it is not a LoRA adapter: it has no {KEY_GENERAL_TYPE} = \"adapter\""
                ));
            }
        }
        let architecture = string_key(header, KEY_ARCHITECTURE)?
            .ok_or_else(|| {
                format!("it has no {KEY_ARCHITECTURE}: llama.cpp cannot tell which models it fits")
            })?
            .to_owned();
        match string_key(header, KEY_ADAPTER_TYPE)? {
            Some("lora") => {}
            Some(other) => {
                return Err(format!(
                    "it is a {other:?} adapter; only LoRA adapters ({KEY_ADAPTER_TYPE} = \"lora\") can be applied"
                ));
            }
            None => return Err(format!("it has no {KEY_ADAPTER_TYPE} = \"lora\"")),
        }
        let alpha = match header.get(KEY_ALPHA) {
            None => 0.0,
            Some(Value::F32(a)) if a.is_finite() => *a,
            Some(Value::F32(a)) => return Err(format!("its {KEY_ALPHA} is {a}, not a number")),
            Some(other) => {
                return Err(format!(
                    "its {KEY_ALPHA} must be an f32, found {}",
                    value_kind(other)
                ));
            }
        };
        let invocation_tokens = match header.get(KEY_ALORA_INVOCATION) {
            None => 0,
            Some(Value::Array {
                item: crate::ValueType::U32,
                len,
            }) => *len,
            Some(other) => {
                return Err(format!(
                    "its {KEY_ALORA_INVOCATION} must be an array of u32, found {}",
                    value_kind(other)
                ));
            }
        };
        let pairs = pairs(&header.tensors)?;
        if pairs.is_empty() {
            return Err(
                "it holds no LoRA tensors (`W.lora_a` and `W.lora_b`): it would change nothing"
                    .into(),
            );
        }
        Ok(Adapter {
            architecture,
            alpha,
            invocation_tokens,
            pairs,
        })
    }

    /// Every distinct rank, smallest first.
    pub fn ranks(&self) -> Vec<u64> {
        let mut r: Vec<u64> = self.pairs.iter().map(LoraPair::rank).collect();
        r.sort_unstable();
        r.dedup();
        r
    }
}

/// A string key, refusing another type (llama.cpp's reader asserts on it: the process
/// would end).
fn string_key<'h>(header: &'h Header, key: &str) -> Result<Option<&'h str>, String> {
    match header.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(format!(
            "its {key} must be a string, found {}",
            value_kind(other)
        )),
    }
}

fn value_kind(v: &Value) -> String {
    match v {
        Value::Array { item, len } => format!("an array of {len} {item:?}"),
        Value::String(_) => "a string".into(),
        other => format!("{other:?}"),
    }
}

/// Pair the tensors as llama.cpp does, with its refusals and the checks it leaves out.
fn pairs(tensors: &[TensorInfo]) -> Result<Vec<LoraPair>, String> {
    let mut order: Vec<String> = Vec::new();
    let mut halves: HashMap<String, (Option<&TensorInfo>, Option<&TensorInfo>)> = HashMap::new();
    for t in tensors {
        let (weight, is_a) = if let Some(w) = t.name.strip_suffix(SUFFIX_A) {
            (w, true)
        } else if let Some(w) = t.name.strip_suffix(SUFFIX_B) {
            (w, false)
        } else if t.name.ends_with(SKIPPED_SUFFIX) {
            continue;
        } else {
            return Err(format!(
                "its tensor {:?} is neither a `{SUFFIX_A}` nor a `{SUFFIX_B}` tensor",
                t.name
            ));
        };
        // llama.cpp removes every occurrence of the suffix, not only the last one: a name
        // holding it twice would pair under another weight's name.
        if weight.contains(SUFFIX_A) || weight.contains(SUFFIX_B) {
            return Err(format!(
                "its tensor {:?} names a weight that itself contains `{SUFFIX_A}` or `{SUFFIX_B}`",
                t.name
            ));
        }
        if !LORA_TYPES.contains(&t.ggml_type.name) {
            return Err(format!(
                "its tensor {:?} is {}; LoRA tensors must be one of {}",
                t.name,
                t.ggml_type.name,
                LORA_TYPES.join(", ")
            ));
        }
        if t.dims.len() > 2 && t.dims[2..].iter().any(|&d| d != 1) {
            return Err(format!(
                "its tensor {:?} has dimensions {}; LoRA tensors are matrices",
                t.name,
                dims_text(&t.dims)
            ));
        }
        let entry = halves.entry(weight.to_owned()).or_insert_with(|| {
            order.push(weight.to_owned());
            (None, None)
        });
        if is_a { &mut entry.0 } else { &mut entry.1 }.replace(t);
    }
    order
        .into_iter()
        .map(|weight| {
            let (a, b) = halves.remove(&weight).unwrap_or_default();
            let (Some(a), Some(b)) = (a, b) else {
                let missing = if a.is_none() { SUFFIX_A } else { SUFFIX_B };
                return Err(format!(
                    "its LoRA pair for {weight:?} lacks the {weight}{missing} tensor"
                ));
            };
            let pair = LoraPair {
                weight,
                a: a.clone(),
                b: b.clone(),
            };
            // llama.cpp checks a regular pair's inner dimensions; for the token embedding it
            // checks none, and unequal ranks end the process in the matrix product.
            let rank_of_a = if pair.is_token_embd() {
                ne(a, 0)
            } else {
                ne(a, 1)
            };
            if rank_of_a != pair.rank() {
                return Err(format!(
                    "its LoRA pair for {:?} disagrees on the rank: lora_a has rank {rank_of_a} ({}), lora_b rank {} ({})",
                    pair.weight,
                    dims_text(&a.dims),
                    pair.rank(),
                    dims_text(&b.dims)
                ));
            }
            Ok(pair)
        })
        .collect()
}

#[cfg(test)]
mod tests;
