//! One LoRA adapter that applies the sum of several at their scales.
//!
//! llama.cpp applies adapters per context, and the safe binding the daemon uses sets one
//! adapter with one scale per context; a task that wants several is served one merged
//! from them. It lives here, beside the reader and the writer, because it is GGUF work
//! only (headers, tensor bytes, F32 arithmetic) that needs no model and no llama.cpp: the
//! daemon checks the result against its model before llama.cpp reads it, like any adapter.
//!
//! The sum of adapters is a LoRA of the summed ranks. For a weight changed by inputs `i`,
//! each adding `c_i · B_i·(A_i·x)` with `c_i = scale_i · alpha_i / rank_i`
//! ([`super::effective_scale`]), the merged pair is `A = [A_1; A_2; ...]` (the ranks stacked)
//! and `B = [c_1·B_1, c_2·B_2, ...]`, so `B·(A·x) = Σ c_i·B_i·(A_i·x)`; a weight only some
//! inputs change gets only their terms. llama.cpp scales every pair by one `alpha / rank`,
//! with `rank` that pair's own, so the merged pairs all get the same rank `R` (the largest
//! sum, the others padded with zero rows, which add exactly nothing) and `alpha = R`: at
//! scale 1 the factor is exactly 1, at scale `s` the merge applies `s` times the sum.

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::{
    Adapter, KEY_ADAPTER_TYPE, KEY_ALPHA, KEY_ARCHITECTURE, KEY_GENERAL_TYPE, LoraPair, SUFFIX_A,
    SUFFIX_B, dims_text, effective_scale,
};
use crate::parse::{Header, TensorInfo, parse_file};
use crate::write::{GgufBuilder, MetaValue};

/// The most adapters one merge takes (a task's adapters, with room to spare).
pub const MAX_MERGE_INPUTS: usize = 8;

/// The largest merged adapter written, in bytes of tensor data: computed from the inputs'
/// headers before any tensor data is read. It bounds what is read too: every value of an
/// input read (those at scale 0 are not) is one value of the output. Real adapters take
/// some megabytes to a few hundred; beyond this a merge is a mistake, not a task.
pub const MAX_MERGED_BYTES: u64 = 4 << 30;

/// ggml's type id of F32, the type of every merged tensor.
const F32: u32 = 0;

/// What a merge wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct Merged {
    pub architecture: String,
    /// Rank of every merged pair (and its alpha).
    pub rank: u64,
    /// Weights the merged adapter changes.
    pub weights: usize,
    /// Inputs whose terms it holds (those with a scale other than 0).
    pub inputs_used: usize,
    /// Length of the written file.
    pub file_len: u64,
}

/// One input, read and checked.
struct Input {
    path: PathBuf,
    header: Header,
    adapter: Adapter,
    scale: f32,
}

/// One merged weight: which input pairs feed it, with their factors.
struct Plan {
    weight: String,
    token_embd: bool,
    /// The base weight's dimensions the pairs agree on.
    weight_dims: [u64; 2],
    /// (input index, pair index, factor `c_i`).
    terms: Vec<(usize, usize, f32)>,
}

impl Plan {
    fn rank_sum(&self, inputs: &[Input]) -> u64 {
        self.terms
            .iter()
            .map(|&(i, p, _)| inputs[i].adapter.pairs[p].rank())
            .sum()
    }

    /// The merged pair's dimensions at rank `r` (`lora_a`, `lora_b`), laid out as the inputs.
    fn dims(&self, r: u64) -> ([u64; 2], [u64; 2]) {
        let [ne0, ne1] = self.weight_dims;
        if self.token_embd {
            ([r, ne1], [r, ne0])
        } else {
            ([ne0, r], [r, ne1])
        }
    }
}

/// Merge `inputs` (adapter file, scale) into one adapter at `out` that, applied at scale 1,
/// changes the model as all of them at their scales do. Inputs at scale 0 are checked but
/// contribute nothing. Refuses, with the reason, more than [`MAX_MERGE_INPUTS`] inputs,
/// a file that is not a LoRA adapter llama.cpp would accept, adapters for different
/// architectures or different shapes of one weight, an activated LoRA, quantized lora
/// tensors, and a result above [`MAX_MERGED_BYTES`]. Writes to a temporary name beside
/// `out` and renames it into place.
pub fn merge<P: AsRef<Path>>(inputs: &[(P, f32)], out: &Path) -> Result<Merged, String> {
    if inputs.is_empty() {
        return Err("nothing to merge: give at least one adapter".into());
    }
    if inputs.len() > MAX_MERGE_INPUTS {
        return Err(format!(
            "{} adapters given; at most {MAX_MERGE_INPUTS} merge into one",
            inputs.len()
        ));
    }
    let inputs = inputs
        .iter()
        .enumerate()
        .map(|(i, (path, scale))| read_input(i + 1, path.as_ref(), *scale))
        .collect::<Result<Vec<_>, _>>()?;
    let first = &inputs[0];
    if let Some((n, other)) = inputs
        .iter()
        .enumerate()
        .find(|(_, x)| x.adapter.architecture != first.adapter.architecture)
    {
        return Err(format!(
            "input {} ({}) is an adapter for {:?} models and input 1 ({}) for {:?} models: only adapters for one architecture merge",
            n + 1,
            other.path.display(),
            other.adapter.architecture,
            first.path.display(),
            first.adapter.architecture
        ));
    }
    let plans = plan(&inputs)?;
    if plans.is_empty() {
        return Err(
            "every adapter has scale 0: the merge would change nothing; serve the model without an adapter"
                .into(),
        );
    }
    let rank = plans.iter().map(|p| p.rank_sum(&inputs)).max().unwrap_or(1);
    let elements = plans.iter().fold(0u64, |sum, p| {
        let (a, b) = p.dims(rank);
        sum.saturating_add(a[0].saturating_mul(a[1]))
            .saturating_add(b[0].saturating_mul(b[1]))
    });
    let bytes = elements.saturating_mul(4);
    if bytes > MAX_MERGED_BYTES {
        return Err(format!(
            "the merged adapter would hold {bytes} bytes of tensors (rank {rank} over {} weights); the limit is {MAX_MERGED_BYTES}",
            plans.len()
        ));
    }

    let mut file = GgufBuilder::new()
        .kv(
            KEY_ARCHITECTURE,
            MetaValue::Str(first.adapter.architecture.clone()),
        )
        .kv(
            "general.name",
            MetaValue::str("sovereign merged LoRA adapter"),
        )
        .kv(KEY_GENERAL_TYPE, MetaValue::str("adapter"))
        .kv(KEY_ADAPTER_TYPE, MetaValue::str("lora"))
        // Exact: llama.cpp's factor alpha / rank is R / R = 1 for every pair.
        .kv(KEY_ALPHA, MetaValue::F32(rank as f32));
    for p in &plans {
        let (a, b) = p.dims(rank);
        file = file
            .tensor_id(&format!("{}{SUFFIX_A}", p.weight), &a, F32)
            .tensor_id(&format!("{}{SUFFIX_B}", p.weight), &b, F32);
    }

    let mut readers = inputs
        .iter()
        .map(|x| {
            std::fs::File::open(&x.path)
                .map(io::BufReader::new)
                .map_err(|e| format!("cannot read {}: {e}", x.path.display()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let tmp = partial_name(out);
    let written = write_file(&tmp, &file, |i, w| {
        let plan = &plans[i / 2];
        let is_b = i % 2 == 1;
        let mut parts = Vec::with_capacity(plan.terms.len());
        for &(n, p, factor) in &plan.terms {
            let input = &inputs[n];
            let pair = &input.adapter.pairs[p];
            let t = if is_b { &pair.b } else { &pair.a };
            let mut values = read_tensor(&mut readers[n], &input.header, t)
                .map_err(|e| io::Error::other(format!("{}: {e}", input.path.display())))?;
            if is_b {
                values.iter_mut().for_each(|v| *v *= factor);
            }
            parts.push((values, pair.rank() as usize));
        }
        // A regular lora_a holds its rank as rows (outermost); every other lora tensor
        // holds it innermost, one run per row.
        let stacked = if !is_b && !plan.token_embd {
            stack_rows(&parts, rank as usize * plan.weight_dims[0] as usize)
        } else {
            stack_within_rows(&parts, rank as usize)
        };
        let mut buf = Vec::with_capacity(stacked.len() * 4);
        stacked
            .iter()
            .for_each(|v| buf.extend_from_slice(&v.to_le_bytes()));
        w.write_all(&buf)
    });
    let file_len = match written {
        Ok(n) => n,
        Err(e) => {
            remove_partial(&tmp);
            return Err(format!("cannot write {}: {e}", out.display()));
        }
    };
    rename_into_place(&tmp, out)?;
    Ok(Merged {
        architecture: first.adapter.architecture.clone(),
        rank,
        weights: plans.len(),
        inputs_used: inputs.iter().filter(|x| x.scale != 0.0).count(),
        file_len,
    })
}

fn read_input(n: usize, path: &Path, scale: f32) -> Result<Input, String> {
    let place = || format!("input {n} ({})", path.display());
    if !scale.is_finite() {
        return Err(format!("{}: its scale {scale} is not a number", place()));
    }
    let header =
        parse_file(path).map_err(|e| format!("{} is not a valid GGUF file: {e}", place()))?;
    let adapter = Adapter::from_header(&header).map_err(|e| format!("{}: {e}", place()))?;
    if adapter.invocation_tokens > 0 {
        return Err(format!(
            "{}: it is an activated LoRA (it applies only after its invocation tokens); merged, it would apply everywhere",
            place()
        ));
    }
    for pair in &adapter.pairs {
        for t in [&pair.a, &pair.b] {
            if !MERGEABLE.contains(&t.ggml_type.name) {
                return Err(format!(
                    "{}: its tensor {:?} is quantized ({}); merging needs F32, F16 or BF16 LoRA tensors: convert the adapter again with an unquantized output type",
                    place(),
                    t.name,
                    t.ggml_type.name
                ));
            }
        }
    }
    Ok(Input {
        path: path.to_owned(),
        header,
        adapter,
        scale,
    })
}

/// The merged weights in order of first appearance, each with its inputs' terms.
fn plan(inputs: &[Input]) -> Result<Vec<Plan>, String> {
    let mut plans: Vec<Plan> = Vec::new();
    let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for (n, input) in inputs.iter().enumerate() {
        if input.scale == 0.0 {
            continue;
        }
        for (p, pair) in input.adapter.pairs.iter().enumerate() {
            let factor = effective_scale(input.adapter.alpha, pair.rank(), input.scale);
            let at = *index.entry(pair.weight.clone()).or_insert_with(|| {
                plans.push(Plan {
                    weight: pair.weight.clone(),
                    token_embd: pair.is_token_embd(),
                    weight_dims: pair.weight_dims(),
                    terms: Vec::new(),
                });
                plans.len() - 1
            });
            let plan = &mut plans[at];
            if plan.weight_dims != pair.weight_dims() {
                // A plan's first term set its dimensions, so it has one.
                let m = plan.terms.first().map_or(n, |t| t.0);
                return Err(mismatch((n, input), pair, (m, &inputs[m]), plan));
            }
            plan.terms.push((n, p, factor));
        }
    }
    Ok(plans)
}

fn mismatch(
    (n, input): (usize, &Input),
    pair: &LoraPair,
    (m, other): (usize, &Input),
    plan: &Plan,
) -> String {
    format!(
        "input {} ({}) changes {} as a {} weight, input {} ({}) as a {} weight: they are adapters for different models",
        n + 1,
        input.path.display(),
        pair.weight,
        dims_text(&pair.weight_dims()),
        m + 1,
        other.path.display(),
        dims_text(&plan.weight_dims)
    )
}

/// Read one tensor's data as F32. Its size and place come from the validated header,
/// which checked them against the file's length.
pub(super) fn read_tensor<R: Read + Seek>(
    r: &mut R,
    header: &Header,
    t: &TensorInfo,
) -> io::Result<Vec<f32>> {
    let start = header
        .data_offset
        .checked_add(t.offset)
        .ok_or_else(|| io::Error::other("tensor offset overflows"))?;
    let len = usize::try_from(t.n_bytes).map_err(io::Error::other)?;
    r.seek(SeekFrom::Start(start))?;
    let mut bytes = vec![0u8; len];
    r.read_exact(&mut bytes)?;
    let values = decode(t, &bytes)
        .ok_or_else(|| io::Error::other(format!("tensor {:?} cannot be decoded", t.name)))?;
    if let Some(bad) = values.iter().find(|v| !v.is_finite()) {
        return Err(io::Error::other(format!(
            "tensor {:?} holds {bad}: an adapter's values must be numbers",
            t.name
        )));
    }
    Ok(values)
}

/// The lora tensor types a merge reads ([`decode`]).
const MERGEABLE: &[&str] = &["F32", "F16", "BF16"];

/// Little-endian F32, F16 or BF16 bytes as F32; `None` for any other type.
fn decode(t: &TensorInfo, bytes: &[u8]) -> Option<Vec<f32>> {
    match t.ggml_type.name {
        "F32" => Some(
            bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        ),
        "F16" => Some(
            bytes
                .chunks_exact(2)
                .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])))
                .collect(),
        ),
        "BF16" => Some(
            bytes
                .chunks_exact(2)
                .map(|c| f32::from_bits(u32::from(u16::from_le_bytes([c[0], c[1]])) << 16))
                .collect(),
        ),
        _ => None,
    }
}

/// IEEE half to single precision (exact: every half is a single).
pub(super) fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exp = u32::from((h >> 10) & 0x1f);
    let mant = u32::from(h & 0x3ff);
    match exp {
        0 => {
            let v = mant as f32 * f32::from_bits(0x3380_0000); // 2^-24
            if sign != 0 { -v } else { v }
        }
        0x1f => f32::from_bits(sign | 0x7f80_0000 | (mant << 13)),
        _ => f32::from_bits(sign | ((exp + 112) << 23) | (mant << 13)),
    }
}

/// Parts whose rank is the outer dimension: appended, then zero rows up to `total` values.
fn stack_rows(parts: &[(Vec<f32>, usize)], total: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(total);
    parts.iter().for_each(|(v, _)| out.extend_from_slice(v));
    out.resize(total, 0.0);
    out
}

/// Parts whose rank is the inner dimension (rows of `rank_i` values each, the same number
/// of rows in every part): row `j` is the parts' rows `j` side by side, zero-padded to `r`.
fn stack_within_rows(parts: &[(Vec<f32>, usize)], r: usize) -> Vec<f32> {
    let rows = parts
        .first()
        .map_or(0, |(v, rank)| v.len() / (*rank).max(1));
    let mut out = Vec::with_capacity(rows * r);
    for j in 0..rows {
        let start = out.len();
        for (v, rank) in parts {
            out.extend_from_slice(&v[j * rank..(j + 1) * rank]);
        }
        out.resize(start + r, 0.0);
    }
    out
}

/// `NAME.partial` beside `out`.
fn partial_name(out: &Path) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    out.with_file_name(name)
}

// The GGUF writer writes where its caller says (an adapter the caller merges), never a path
// of the machine sovereign manages; the same for its temporary and the rename.
#[allow(clippy::disallowed_methods)]
fn write_file(
    path: &Path,
    file: &GgufBuilder,
    data: impl FnMut(usize, &mut dyn Write) -> io::Result<()>,
) -> io::Result<u64> {
    let mut w = io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let n = file.write_with(&mut w, data)?;
    w.flush()?;
    w.get_ref().sync_all()?;
    Ok(n)
}

#[allow(clippy::disallowed_methods)]
fn remove_partial(path: &Path) {
    // Best effort: the error being reported is the write's.
    let _ = std::fs::remove_file(path);
}

#[allow(clippy::disallowed_methods)]
fn rename_into_place(tmp: &Path, out: &Path) -> Result<(), String> {
    std::fs::rename(tmp, out).map_err(|e| {
        remove_partial(tmp);
        format!("cannot rename {} to {}: {e}", tmp.display(), out.display())
    })
}
