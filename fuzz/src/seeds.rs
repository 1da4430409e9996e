//! The corpus's seeds: small valid files of each shape the parser must accept, and a
//! few invalid ones near the boundaries. Committed under `fuzz/corpus/gguf/`.

use sovereign_gguf::write::{GgufBuilder, LlamaShape, MetaValue};
use sovereign_gguf::{GgmlType, ValueType};

fn ty(name: &str) -> GgmlType {
    GgmlType::by_name(name).unwrap_or(GgmlType {
        id: 0,
        name: "F32",
        block_size: 1,
        type_size: 4,
    })
}

fn micro(version: u32, ggml: &str) -> GgufBuilder {
    let mut b = GgufBuilder::llama(LlamaShape {
        layers: 1,
        embedding: if ggml == "F32" { 8 } else { 32 },
        feed_forward: 32,
        vocab: 8,
        context: 512,
        ggml_type: ty(ggml),
        file_type: 0,
    });
    b.version = version;
    b
}

pub fn all() -> Vec<(&'static str, Vec<u8>)> {
    let nested = GgufBuilder::new()
        .kv("general.architecture", MetaValue::str("llama"))
        .kv("general.alignment", MetaValue::U32(64))
        .kv(
            "flags",
            MetaValue::Array(
                ValueType::Bool,
                vec![MetaValue::Bool(true), MetaValue::Bool(false)],
            ),
        )
        .kv(
            "nested",
            MetaValue::Array(
                ValueType::Array,
                vec![MetaValue::Array(
                    ValueType::U32,
                    vec![MetaValue::U32(1), MetaValue::U32(2)],
                )],
            ),
        )
        .kv("scalars.i64", MetaValue::I64(-1))
        .kv("scalars.f64", MetaValue::F64(0.5))
        .tensor("a", &[4, 2], ty("F32"))
        .tensor("b", &[32], ty("Q8_0"))
        .tensor("c", &[256], ty("Q4_K"));
    let mut with_alignment = nested.clone();
    with_alignment.alignment = 64;
    let valid_v3 = micro(3, "F32").to_bytes();
    let mut bad_magic = valid_v3.clone();
    bad_magic[..4].copy_from_slice(b"GGML");
    let truncated = valid_v3.get(..valid_v3.len() / 3).unwrap_or(&[]).to_vec();
    vec![
        ("valid-v3-f32.gguf", valid_v3),
        ("valid-v2-f32.gguf", micro(2, "F32").to_bytes()),
        ("valid-v3-q8_0.gguf", micro(3, "Q8_0").to_bytes()),
        ("valid-nested-aligned64.gguf", with_alignment.to_bytes()),
        ("valid-empty.gguf", GgufBuilder::new().to_bytes()),
        ("invalid-bad-magic.gguf", bad_magic),
        ("invalid-truncated.gguf", truncated),
    ]
}
