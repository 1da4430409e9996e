//! The adapter reader's refusals, generated adapters against their model, and merges
//! checked against the sum of their inputs' changes computed here as llama.cpp computes them.

// Tests build their own adapter files in temporary folders.
#![allow(clippy::disallowed_methods)]

use std::path::{Path, PathBuf};

use super::merge::{f16_to_f32, read_tensor};
use super::*;
use crate::model::{BLOCK_MATRICES, ModelSpec, f16_bits, write_model};
use crate::parse::{parse_bytes, parse_file};
use crate::write::{GgufBuilder, MetaValue};

fn adapter_bytes(model: &ModelSpec, lora: &LoraSpec) -> Vec<u8> {
    let mut out = Vec::new();
    write_adapter(model, lora, &mut out).unwrap();
    out
}

fn write_to(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// A small adapter: `targets` in every block, of `rank`.
fn small(targets: &[&str], rank: u32, alpha: f32, seed: u64) -> LoraSpec {
    LoraSpec {
        name: "test".into(),
        rank,
        alpha,
        seed,
        targets: targets.iter().map(|s| s.to_string()).collect(),
        gain: 1.0,
    }
}

/// One hand-made lora pair: weight name, dims of a and b, ggml type id, values.
struct RawPair<'a> {
    weight: &'a str,
    a: Vec<u64>,
    b: Vec<u64>,
    type_id: u32,
    values: Option<(Vec<f32>, Vec<f32>)>,
}

/// An adapter header with `extra` keys replacing or adding to the usual ones.
fn raw_adapter(pairs: &[RawPair], keys: &[(&str, MetaValue)]) -> Vec<u8> {
    let mut b = GgufBuilder::new();
    let usual = [
        ("general.architecture", MetaValue::str("llama")),
        ("general.type", MetaValue::str("adapter")),
        ("adapter.type", MetaValue::str("lora")),
        ("adapter.lora.alpha", MetaValue::F32(4.0)),
    ];
    for (k, v) in usual {
        let v = keys
            .iter()
            .find(|(key, _)| *key == k)
            .map_or(v, |(_, v)| v.clone());
        b = b.kv(k, v);
    }
    for (k, v) in keys {
        if b.metadata.iter().all(|(key, _)| key != k) {
            b = b.kv(k, v.clone());
        }
    }
    let mut data: Vec<Vec<u8>> = Vec::new();
    for p in pairs {
        b = b
            .tensor_id(&format!("{}.lora_a", p.weight), &p.a, p.type_id)
            .tensor_id(&format!("{}.lora_b", p.weight), &p.b, p.type_id);
        for (n, values) in [
            (p.a.iter().product::<u64>(), p.values.as_ref().map(|v| &v.0)),
            (p.b.iter().product::<u64>(), p.values.as_ref().map(|v| &v.1)),
        ] {
            let mut bytes = Vec::new();
            for i in 0..n as usize {
                let v = values.map_or(0.25, |v| v[i]);
                match p.type_id {
                    0 => bytes.extend(v.to_le_bytes()),
                    1 => bytes.extend(f16_bits(v).to_le_bytes()),
                    30 => bytes.extend(((v.to_bits() >> 16) as u16).to_le_bytes()),
                    _ => {}
                }
            }
            data.push(bytes);
        }
    }
    if pairs.iter().all(|p| [0, 1, 30].contains(&p.type_id)) {
        let mut out = Vec::new();
        b.write_with(&mut out, |i, w| w.write_all(&data[i]))
            .unwrap();
        out
    } else {
        b.to_bytes()
    }
}

fn pair(weight: &str, a: &[u64], b: &[u64]) -> RawPair<'static> {
    RawPair {
        weight: Box::leak(weight.to_owned().into_boxed_str()),
        a: a.to_vec(),
        b: b.to_vec(),
        type_id: 0,
        values: None,
    }
}

fn refusal(bytes: &[u8]) -> String {
    Adapter::from_header(&parse_bytes(bytes).unwrap()).unwrap_err()
}

#[test]
fn the_tiny_adapter_pairs_every_block_weight_with_the_models_shapes() {
    let model = ModelSpec::tiny(42);
    let bytes = adapter_bytes(&model, &LoraSpec::tiny(1));
    let adapter = Adapter::from_header(&parse_bytes(&bytes).unwrap()).unwrap();
    assert_eq!(adapter.architecture, "llama");
    assert_eq!(adapter.alpha, 16.0);
    assert_eq!(adapter.ranks(), vec![8]);
    assert_eq!(
        adapter.pairs.len(),
        BLOCK_MATRICES.len() * model.block_count as usize
    );
    let mut model_bytes = Vec::new();
    write_model(&model, &mut model_bytes).unwrap();
    let model_header = parse_bytes(&model_bytes).unwrap();
    for p in &adapter.pairs {
        let w = model_header
            .tensors
            .iter()
            .find(|t| t.name == p.weight)
            .unwrap_or_else(|| panic!("{} is not in the model", p.weight));
        assert_eq!(w.dims, p.weight_dims().to_vec(), "{}", p.weight);
        assert_eq!(p.a.ggml_type.name, "F32");
    }
    assert_eq!(bytes, adapter_bytes(&model, &LoraSpec::tiny(1)));
    assert_ne!(bytes, adapter_bytes(&model, &LoraSpec::tiny(2)));
}

#[test]
fn generating_refuses_an_unknown_target_and_rank_zero() {
    let model = ModelSpec::tiny(1);
    let mut out = Vec::new();
    let e = write_adapter(&model, &small(&["attn_qq"], 2, 2.0, 1), &mut out).unwrap_err();
    assert!(
        e.to_string().contains("\"attn_qq\" is not a block weight"),
        "{e}"
    );
    let e = write_adapter(&model, &small(&["attn_q"], 0, 2.0, 1), &mut out).unwrap_err();
    assert!(e.to_string().contains("rank is at least 1"), "{e}");
}

#[test]
fn what_llama_cpp_refuses_or_would_crash_on_is_refused_with_the_reason() {
    let ok = || pair("blk.0.attn_q.weight", &[8, 2], &[2, 8]);
    assert!(Adapter::from_header(&parse_bytes(&raw_adapter(&[ok()], &[])).unwrap()).is_ok());

    let mut model = Vec::new();
    write_model(&ModelSpec::tiny(1), &mut model).unwrap();
    assert!(refusal(&model).contains("it is a model, not a LoRA adapter"));

    let e = refusal(&raw_adapter(
        &[ok()],
        &[("general.type", MetaValue::str("model"))],
    ));
    assert!(
        e.contains("general.type is \"model\", not \"adapter\""),
        "{e}"
    );
    // Keys of another type are assertions in llama.cpp's GGUF reader.
    let e = refusal(&raw_adapter(
        &[ok()],
        &[("general.type", MetaValue::U32(1))],
    ));
    assert!(
        e.contains("general.type must be a string, found U32(1)"),
        "{e}"
    );
    let e = refusal(&raw_adapter(
        &[ok()],
        &[("adapter.lora.alpha", MetaValue::U32(16))],
    ));
    assert!(e.contains("adapter.lora.alpha must be an f32"), "{e}");
    let e = refusal(&raw_adapter(
        &[ok()],
        &[("adapter.type", MetaValue::str("control_vector"))],
    ));
    assert!(e.contains("it is a \"control_vector\" adapter"), "{e}");
    let e = refusal(&raw_adapter(
        &[ok()],
        &[(
            "adapter.alora.invocation_tokens",
            MetaValue::Array(crate::ValueType::I32, vec![MetaValue::I32(1)]),
        )],
    ));
    assert!(e.contains("must be an array of u32"), "{e}");

    let e = refusal(&raw_adapter(
        &[pair("blk.0.attn_q.weight", &[8, 2], &[3, 8])],
        &[],
    ));
    assert!(
        e.contains("disagrees on the rank: lora_a has rank 2 (8 x 2), lora_b rank 3 (3 x 8)"),
        "{e}"
    );
    // The token embedding's pair is transposed; llama.cpp does not compare its ranks.
    let e = refusal(&raw_adapter(
        &[pair("token_embd.weight", &[2, 50], &[3, 8])],
        &[],
    ));
    assert!(
        e.contains("disagrees on the rank: lora_a has rank 2"),
        "{e}"
    );
    let embd = Adapter::from_header(
        &parse_bytes(&raw_adapter(
            &[pair("token_embd.weight", &[2, 50], &[2, 8])],
            &[],
        ))
        .unwrap(),
    )
    .unwrap();
    assert_eq!(embd.pairs[0].weight_dims(), [8, 50]);
    assert_eq!(embd.pairs[0].rank(), 2);

    let mut q = ok();
    q.type_id = 12; // Q4_K
    q.a = vec![256, 2];
    q.b = vec![256, 8];
    let e = refusal(&raw_adapter(&[q], &[]));
    assert!(
        e.contains("is Q4_K; LoRA tensors must be one of F32, F16, BF16, Q8_0"),
        "{e}"
    );

    let e = refusal(&raw_adapter(
        &[pair("blk.0.attn_q.weight", &[8, 2, 2], &[2, 8])],
        &[],
    ));
    assert!(
        e.contains("has dimensions 8 x 2 x 2; LoRA tensors are matrices"),
        "{e}"
    );

    let lone = GgufBuilder::new()
        .kv("general.architecture", MetaValue::str("llama"))
        .kv("general.type", MetaValue::str("adapter"))
        .kv("adapter.type", MetaValue::str("lora"))
        .tensor_id("blk.0.attn_q.weight.lora_a", &[8, 2], 0)
        .tensor_id("blk.0.attn_q.weight.delta", &[8, 2], 0);
    let e = refusal(&lone.to_bytes());
    assert!(
        e.contains("\"blk.0.attn_q.weight.delta\" is neither"),
        "{e}"
    );
    let lone = GgufBuilder::new()
        .kv("general.architecture", MetaValue::str("llama"))
        .kv("general.type", MetaValue::str("adapter"))
        .kv("adapter.type", MetaValue::str("lora"))
        .tensor_id("blk.0.attn_q.weight.lora_a", &[8, 2], 0)
        .tensor_id("blk.1.attn_norm.weight", &[8], 0);
    let e = refusal(&lone.to_bytes());
    assert!(
        e.contains("lacks the blk.0.attn_q.weight.lora_b tensor"),
        "{e}"
    );
    let e = refusal(&raw_adapter(&[], &[]));
    assert!(e.contains("holds no LoRA tensors"), "{e}");
}

#[test]
fn half_precision_reads_back_exactly() {
    for bits in (0..=u16::MAX).step_by(7) {
        let x = f16_to_f32(bits);
        if x.is_nan() {
            continue;
        }
        assert_eq!(f16_bits(x), bits, "{bits:#06x} -> {x}");
    }
    assert_eq!(f16_to_f32(0x3c00), 1.0);
    assert_eq!(f16_to_f32(0xc000), -2.0);
    assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
}

/// Each weight's change `scale·B·A` an adapter makes at `scale`, as llama.cpp computes it:
/// `[n_out][n_in]` for a regular weight, `[token][n_embd]` for the token embedding.
fn deltas(path: &Path, scale: f32) -> std::collections::BTreeMap<String, Vec<f32>> {
    let header = parse_file(path).unwrap();
    let adapter = Adapter::from_header(&header).unwrap();
    let mut file = std::io::BufReader::new(std::fs::File::open(path).unwrap());
    let mut out = std::collections::BTreeMap::new();
    for p in &adapter.pairs {
        let a = read_tensor(&mut file, &header, &p.a).unwrap();
        let b = read_tensor(&mut file, &header, &p.b).unwrap();
        let r = p.rank() as usize;
        let c = effective_scale(adapter.alpha, p.rank(), scale);
        let [ne0, ne1] = p.weight_dims().map(|d| d as usize);
        let mut d = Vec::new();
        if p.is_token_embd() {
            for t in 0..ne1 {
                for o in 0..ne0 {
                    d.push(c * (0..r).map(|k| b[o * r + k] * a[t * r + k]).sum::<f32>());
                }
            }
        } else {
            for o in 0..ne1 {
                for i in 0..ne0 {
                    d.push(c * (0..r).map(|k| b[o * r + k] * a[k * ne0 + i]).sum::<f32>());
                }
            }
        }
        out.insert(p.weight.clone(), d);
    }
    out
}

fn assert_close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-5 * (1.0 + w.abs()),
            "{what}[{i}]: {g} != {w}"
        );
    }
}

#[test]
fn a_merge_applies_the_sum_of_its_inputs_at_their_scales() {
    let dir = tempfile::tempdir().unwrap();
    let model = ModelSpec::tiny(1);
    let a = write_to(
        dir.path(),
        "a.gguf",
        &adapter_bytes(&model, &small(&["attn_q", "ffn_down"], 4, 8.0, 1)),
    );
    // Another rank and alpha, a weight A has and one it has not, alpha 0 (scale as given).
    let b = write_to(
        dir.path(),
        "b.gguf",
        &adapter_bytes(&model, &small(&["ffn_down", "attn_v"], 3, 0.0, 2)),
    );
    let out = dir.path().join("merged.gguf");
    let merged = merge(&[(&a, 0.5), (&b, 2.0)], &out).unwrap();
    assert_eq!(merged.rank, 7);
    assert_eq!(merged.weights, 3 * model.block_count as usize);
    assert_eq!(merged.inputs_used, 2);
    assert!(!dir.path().join("merged.gguf.partial").exists());

    let header = parse_file(&out).unwrap();
    let adapter = Adapter::from_header(&header).unwrap();
    assert_eq!(adapter.alpha, 7.0);
    assert_eq!(adapter.ranks(), vec![7], "every pair padded to one rank");
    let (da, db, dm) = (deltas(&a, 0.5), deltas(&b, 2.0), deltas(&out, 1.0));
    assert_eq!(dm.len(), 12);
    for (w, got) in &dm {
        let mut want = vec![0.0; got.len()];
        for d in [da.get(w), db.get(w)].into_iter().flatten() {
            want.iter_mut().zip(d).for_each(|(x, y)| *x += y);
        }
        assert!(da.contains_key(w) || db.contains_key(w));
        assert_close(got, &want, w);
    }

    // One input at scale 1 is itself; at scale 0 an input adds nothing.
    let one = dir.path().join("one.gguf");
    merge(&[(&a, 1.0), (&b, 0.0)], &one).unwrap();
    let (da1, d1) = (deltas(&a, 1.0), deltas(&one, 1.0));
    assert_eq!(
        d1.keys().collect::<Vec<_>>(),
        da1.keys().collect::<Vec<_>>()
    );
    for (w, d) in &d1 {
        assert_close(d, &da1[w], w);
    }
}

#[test]
fn a_merge_reads_f16_and_bf16_and_the_token_embeddings_layout() {
    let dir = tempfile::tempdir().unwrap();
    let values = |n: usize, k: f32| (0..n).map(|i| k * ((i % 7) as f32 - 3.0) / 4.0).collect();
    let embd = |type_id: u32, r: u64, k: f32| RawPair {
        weight: "token_embd.weight",
        a: vec![r, 5],
        b: vec![r, 4],
        type_id,
        values: Some((values(5 * r as usize, k), values(4 * r as usize, -k))),
    };
    let mut q = pair("blk.0.attn_q.weight", &[4, 2], &[2, 4]);
    q.type_id = 1;
    q.values = Some((values(8, 1.0), values(8, 0.5)));
    let x = write_to(
        dir.path(),
        "x.gguf",
        &raw_adapter(&[embd(1, 2, 1.0), q], &[]),
    );
    let y = write_to(dir.path(), "y.gguf", &raw_adapter(&[embd(30, 3, 0.5)], &[]));
    let out = dir.path().join("m.gguf");
    let merged = merge(&[(&x, 1.5), (&y, -1.0)], &out).unwrap();
    assert_eq!(merged.rank, 5);
    let (dx, dy, dm) = (deltas(&x, 1.5), deltas(&y, -1.0), deltas(&out, 1.0));
    let want: Vec<f32> = dx["token_embd.weight"]
        .iter()
        .zip(&dy["token_embd.weight"])
        .map(|(p, q)| p + q)
        .collect();
    assert_close(&dm["token_embd.weight"], &want, "token_embd");
    assert_close(
        &dm["blk.0.attn_q.weight"],
        &dx["blk.0.attn_q.weight"],
        "attn_q",
    );
}

#[test]
fn a_merge_refuses_what_it_cannot_sum_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let tiny = ModelSpec::tiny(1);
    let a = write_to(
        dir.path(),
        "a.gguf",
        &adapter_bytes(&tiny, &small(&["attn_q"], 2, 2.0, 1)),
    );
    let out = dir.path().join("out.gguf");
    let err = |inputs: &[(&PathBuf, f32)]| merge(inputs, &out).unwrap_err();

    let e = err(&[(&a, 1.0); 9]);
    assert!(e.contains("9 adapters given; at most 8"), "{e}");
    let e = err(&[(&a, 0.0), (&a, 0.0)]);
    assert!(e.contains("every adapter has scale 0"), "{e}");
    let e = err(&[(&a, f32::NAN)]);
    assert!(e.contains("its scale NaN is not a number"), "{e}");

    let other_arch = write_to(
        dir.path(),
        "qwen.gguf",
        &raw_adapter(
            &[pair("blk.0.attn_q.weight", &[128, 2], &[2, 128])],
            &[("general.architecture", MetaValue::str("qwen2"))],
        ),
    );
    let e = err(&[(&a, 1.0), (&other_arch, 1.0)]);
    assert!(
        e.contains("input 2") && e.contains("for \"qwen2\" models and input 1"),
        "{e}"
    );

    let mut q8 = pair("blk.0.attn_q.weight", &[128, 32], &[32, 128]);
    q8.type_id = 8;
    let q8 = write_to(dir.path(), "q8.gguf", &raw_adapter(&[q8], &[]));
    let e = err(&[(&q8, 1.0)]);
    assert!(
        e.contains("is quantized (Q8_0); merging needs F32, F16 or BF16"),
        "{e}"
    );

    let bench_shaped = ModelSpec {
        block_count: 1,
        ..ModelSpec::bench(1)
    };
    let big = write_to(
        dir.path(),
        "big.gguf",
        &adapter_bytes(&bench_shaped, &small(&["attn_q"], 2, 2.0, 1)),
    );
    let e = err(&[(&a, 1.0), (&big, 1.0)]);
    assert!(
        e.contains("changes blk.0.attn_q.weight as a 1024 x 1024 weight, input 1")
            && e.contains("as a 128 x 128 weight"),
        "{e}"
    );

    let alora = write_to(
        dir.path(),
        "alora.gguf",
        &raw_adapter(
            &[pair("blk.0.attn_q.weight", &[128, 2], &[2, 128])],
            &[(
                "adapter.alora.invocation_tokens",
                MetaValue::Array(crate::ValueType::U32, vec![MetaValue::U32(5)]),
            )],
        ),
    );
    let e = err(&[(&alora, 1.0)]);
    assert!(e.contains("it is an activated LoRA"), "{e}");

    let mut model = Vec::new();
    write_model(&tiny, &mut model).unwrap();
    let model = write_to(dir.path(), "model.gguf", &model);
    let e = err(&[(&a, 1.0), (&model, 1.0)]);
    assert!(e.contains("input 2") && e.contains("it is a model"), "{e}");
    assert!(!out.exists(), "no refused merge writes a file");
}
