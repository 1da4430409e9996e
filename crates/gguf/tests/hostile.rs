//! Hostile GGUF files: each defect is rejected with an error that names it and where it
//! is, and nothing panics.

use sovereign_gguf::write::{GgufBuilder, LlamaShape, MetaValue};
use sovereign_gguf::{ErrorKind, GgmlType, GgufError, Summary, ValueType, parse_bytes};

fn tiny() -> GgufBuilder {
    GgufBuilder::llama(LlamaShape::tiny())
}

fn f32() -> GgmlType {
    GgmlType::by_name("F32").unwrap()
}

/// Two F32 tensors, nothing else: short enough to reason about offsets.
fn two_tensors() -> GgufBuilder {
    GgufBuilder::new()
        .kv("general.architecture", MetaValue::str("llama"))
        .tensor("first", &[8], f32())
        .tensor("second", &[8], f32())
}

fn reject(bytes: &[u8]) -> GgufError {
    match parse_bytes(bytes) {
        Ok(h) => panic!("accepted a hostile file: {h:?}"),
        Err(e) => e,
    }
}

fn assert_rejected(bytes: &[u8], kind: ErrorKind, words: &[&str]) -> GgufError {
    let err = reject(bytes);
    let text = err.to_string();
    assert_eq!(err.kind, kind, "{text}");
    assert!(text.starts_with("invalid GGUF at byte "), "{text}");
    for w in words {
        assert!(text.contains(w), "{text:?} does not mention {w:?}");
    }
    err
}

fn patch_u64(bytes: &mut [u8], at: u64, value: u64) {
    bytes[at as usize..at as usize + 8].copy_from_slice(&value.to_le_bytes());
}

#[test]
fn a_generated_llama_file_is_valid_and_summarised() {
    let b = tiny();
    let bytes = b.to_bytes();
    let header = parse_bytes(&bytes).unwrap();
    assert_eq!(header.version, 3);
    assert_eq!(header.tensors.len(), b.tensors.len());
    assert_eq!(header.data_offset % 32, 0);
    let s = Summary::of(&header);
    let expected_params: u64 = b
        .tensors
        .iter()
        .map(|t| t.dims.iter().product::<u64>())
        .sum();
    assert_eq!(s.parameter_count, expected_params);
    assert_eq!(s.architecture.as_deref(), Some("llama"));
    assert_eq!(s.quantization.as_deref(), Some("F16"));
    assert_eq!(s.context_length, Some(2048));
    assert_eq!(s.model_name.as_deref(), Some("sovereign-generated"));

    let mut v2 = tiny();
    v2.version = 2;
    assert_eq!(parse_bytes(&v2.to_bytes()).unwrap().version, 2);
}

#[test]
fn quantized_types_use_their_block_sizes() {
    let q = |name: &str| GgmlType::by_name(name).unwrap();
    let b = GgufBuilder::new()
        .tensor("q4k", &[256, 2], q("Q4_K"))
        .tensor("q8", &[64, 3], q("Q8_0"))
        .tensor("q6k", &[512], q("Q6_K"));
    let h = parse_bytes(&b.to_bytes()).unwrap();
    let sizes: Vec<u64> = h.tensors.iter().map(|t| t.n_bytes).collect();
    assert_eq!(sizes, [2 * 144, 3 * 2 * 34, 2 * 210]);
    assert_eq!(
        Summary::of(&h).quantization.as_deref(),
        Some("Q6_K"),
        "the type with the most bytes"
    );

    let bad_row = GgufBuilder::new().tensor("q4k", &[100], q("Q4_K"));
    assert_rejected(
        &bad_row.to_bytes(),
        ErrorKind::BadDimensions,
        &["not a multiple of Q4_K's block size 256", "tensor \"q4k\""],
    );
}

#[test]
fn an_empty_file() {
    assert_rejected(&[], ErrorKind::Empty, &["empty"]);
}

#[test]
fn bad_magic() {
    let mut bytes = tiny().to_bytes();
    bytes[..4].copy_from_slice(b"GGML");
    assert_rejected(
        &bytes,
        ErrorKind::BadMagic,
        &["at byte 0", "not a GGUF file", "\"GGML\""],
    );
}

#[test]
fn bad_versions() {
    for (v, words) in [
        (7u32, &["at byte 4", "unsupported GGUF version 7"][..]),
        (1, &["version 1 is not supported"]),
        (3u32.swap_bytes(), &["big-endian"]),
        (0, &["unsupported GGUF version 0"]),
    ] {
        let mut b = tiny();
        b.version = v;
        assert_rejected(&b.to_bytes(), ErrorKind::BadVersion, words);
    }
}

#[test]
fn a_truncated_header() {
    let bytes = tiny().to_bytes();
    for cut in [3, 6, 20, 30, 100, 600] {
        let err = reject(&bytes[..cut]);
        assert_eq!(err.kind, ErrorKind::Truncated, "cut at {cut}: {err}");
        assert!(err.offset <= cut as u64, "cut at {cut}: {err}");
    }
    let layout = tiny().layout();
    // Cut in the middle of the tensor infos: the error names the tensor being read.
    let err = reject(&bytes[..layout.header_len as usize - 20]);
    assert_eq!(err.kind, ErrorKind::Truncated);
    assert!(
        err.to_string().contains("tensor \"output.weight\""),
        "{err}"
    );
}

#[test]
fn truncated_tensor_data() {
    let bytes = tiny().to_bytes();
    let cut = &bytes[..bytes.len() - 10];
    assert_rejected(
        cut,
        ErrorKind::OutOfFile,
        &["tensor \"output.weight\"", "past the end of the file"],
    );
}

#[test]
fn a_huge_tensor_count() {
    let mut b = tiny();
    b.tensor_count = Some(u64::MAX);
    assert_rejected(
        &b.to_bytes(),
        ErrorKind::TooMany,
        &["at byte 8", "tensor count is 18446744073709551615", "limit"],
    );
    // Under the limit but more than the file could hold: refused before any allocation.
    b.tensor_count = Some(1_000_000);
    assert_rejected(
        &b.to_bytes(),
        ErrorKind::Truncated,
        &["tensor count is 1000000", "needs at least"],
    );
}

#[test]
fn a_huge_key_value_count() {
    let mut b = tiny();
    b.key_count = Some(u64::MAX);
    assert_rejected(
        &b.to_bytes(),
        ErrorKind::TooMany,
        &["at byte 16", "metadata key count"],
    );
    b.key_count = Some(60_000);
    assert_rejected(
        &b.to_bytes(),
        ErrorKind::Truncated,
        &["metadata key count is 60000"],
    );
}

#[test]
fn a_key_length_past_the_end() {
    let mut bytes = GgufBuilder::new()
        .kv("general.name", MetaValue::str("x"))
        .to_bytes();
    // The key's length field follows the 24-byte preamble.
    patch_u64(&mut bytes, 24, 1_000);
    assert_rejected(
        &bytes,
        ErrorKind::Truncated,
        &["at byte 24", "metadata key is 1000 bytes long", "key #0"],
    );
    patch_u64(&mut bytes, 24, u64::MAX);
    assert_rejected(&bytes, ErrorKind::TooLong, &["limit is 65535"]);
}

#[test]
fn a_string_length_past_the_end() {
    let mut payload = (1u64 << 20).to_le_bytes().to_vec();
    payload.extend(b"abc");
    let b = GgufBuilder::new().kv(
        "tokenizer.chat_template",
        MetaValue::Raw {
            type_id: 8,
            bytes: payload,
        },
    );
    assert_rejected(
        &b.to_bytes(),
        ErrorKind::Truncated,
        &[
            "string value is 1048576 bytes long",
            "key \"tokenizer.chat_template\"",
        ],
    );
    let huge = GgufBuilder::new().kv(
        "k",
        MetaValue::Raw {
            type_id: 8,
            bytes: u64::MAX.to_le_bytes().to_vec(),
        },
    );
    assert_rejected(
        &huge.to_bytes(),
        ErrorKind::TooLong,
        &["string value", "the limit is"],
    );
    // Strings inside arrays too.
    let mut arr = 8u32.to_le_bytes().to_vec();
    arr.extend(2u64.to_le_bytes());
    arr.extend(1u64.to_le_bytes());
    arr.push(b'a');
    arr.extend(999u64.to_le_bytes());
    let b = GgufBuilder::new().kv(
        "tokenizer.ggml.tokens",
        MetaValue::Raw {
            type_id: 9,
            bytes: arr,
        },
    );
    assert_rejected(
        &b.to_bytes(),
        ErrorKind::Truncated,
        &["string in array is 999 bytes long", "tokenizer.ggml.tokens"],
    );
}

#[test]
fn an_unknown_value_type() {
    let b = GgufBuilder::new()
        .kv("general.architecture", MetaValue::str("llama"))
        .kv(
            "mystery",
            MetaValue::Raw {
                type_id: 13,
                bytes: vec![0; 8],
            },
        );
    assert_rejected(
        &b.to_bytes(),
        ErrorKind::UnknownValueType,
        &["unknown value type 13", "key \"mystery\""],
    );
    // Inside an array as well.
    let mut arr = 77u32.to_le_bytes().to_vec();
    arr.extend(1u64.to_le_bytes());
    let b = GgufBuilder::new().kv(
        "arr",
        MetaValue::Raw {
            type_id: 9,
            bytes: arr,
        },
    );
    assert_rejected(
        &b.to_bytes(),
        ErrorKind::UnknownValueType,
        &["unknown value type 77", "key \"arr\""],
    );
}

#[test]
fn arrays_nested_too_deep() {
    let leaf = MetaValue::Array(ValueType::U8, vec![MetaValue::U8(1)]);
    let two = MetaValue::Array(ValueType::Array, vec![leaf.clone()]);
    let ok = GgufBuilder::new().kv("two", two.clone());
    assert!(
        parse_bytes(&ok.to_bytes()).is_ok(),
        "an array of arrays is allowed"
    );
    let three = MetaValue::Array(ValueType::Array, vec![two]);
    let b = GgufBuilder::new().kv("three", three);
    assert_rejected(
        &b.to_bytes(),
        ErrorKind::TooDeep,
        &["nested more than 2 deep", "key \"three\""],
    );

    // A deeply nested hostile chain is refused at the limit, not by recursion running out.
    let mut bytes = GgufBuilder::new()
        .kv(
            "deep",
            MetaValue::Raw {
                type_id: 9,
                bytes: vec![],
            },
        )
        .header();
    for _ in 0..10_000 {
        bytes.extend(9u32.to_le_bytes());
        bytes.extend(1u64.to_le_bytes());
    }
    assert_rejected(&bytes, ErrorKind::TooDeep, &["key \"deep\""]);
}

#[test]
fn tensor_data_outside_the_file() {
    let b = two_tensors();
    let layout = b.layout();
    let mut bytes = b.to_bytes();
    // The last tensor's offset field ends the header.
    patch_u64(&mut bytes, layout.header_len - 8, 1 << 40);
    assert_rejected(
        &bytes,
        ErrorKind::OutOfFile,
        &["tensor \"second\"", "past the end of the file"],
    );
    patch_u64(&mut bytes, layout.header_len - 8, u64::MAX - 31);
    assert_rejected(&bytes, ErrorKind::OutOfFile, &["tensor \"second\""]);
}

#[test]
fn a_misaligned_offset() {
    let b = two_tensors();
    let layout = b.layout();
    let mut bytes = b.to_bytes();
    patch_u64(
        &mut bytes,
        layout.header_len - 8,
        layout.tensor_offsets[1] + 1,
    );
    assert_rejected(
        &bytes,
        ErrorKind::Misaligned,
        &["tensor \"second\"", "not a multiple of the alignment 32"],
    );

    let bad_alignment = GgufBuilder::new().kv("general.alignment", MetaValue::U32(48));
    assert_rejected(
        &bad_alignment.to_bytes(),
        ErrorKind::BadValue,
        &["general.alignment is 48", "power of two"],
    );
    let wrong_type = GgufBuilder::new().kv("general.alignment", MetaValue::U64(32));
    assert_rejected(
        &wrong_type.to_bytes(),
        ErrorKind::BadValue,
        &["must be a u32"],
    );
}

#[test]
fn overlapping_or_unordered_tensors() {
    let b = two_tensors();
    let layout = b.layout();
    let mut bytes = b.to_bytes();
    patch_u64(&mut bytes, layout.header_len - 8, 0);
    assert_rejected(
        &bytes,
        ErrorKind::Overlap,
        &["tensor \"second\"", "previous tensor \"first\""],
    );
}

#[test]
fn dimension_overflow() {
    let b = GgufBuilder::new().tensor("huge", &[1 << 32, 1 << 32, 2], f32());
    assert_rejected(
        &b.to_bytes(),
        ErrorKind::Overflow,
        &["tensor \"huge\"", "overflows at dimension 1"],
    );
    let b = GgufBuilder::new().tensor("neg", &[u64::MAX], f32());
    assert_rejected(
        &b.to_bytes(),
        ErrorKind::BadDimensions,
        &["dimension 0 is 18446744073709551615"],
    );
    let b = GgufBuilder::new().tensor("zero", &[0], f32());
    assert_rejected(
        &b.to_bytes(),
        ErrorKind::BadDimensions,
        &["dimension 0 is 0"],
    );
    let b = GgufBuilder::new().tensor("five", &[1, 1, 1, 1, 1], f32());
    assert_rejected(
        &b.to_bytes(),
        ErrorKind::BadDimensions,
        &["5 dimensions", "1 to 4"],
    );
}

#[test]
fn unknown_tensor_types() {
    let b = GgufBuilder::new().tensor_id("t", &[32], 200);
    assert_rejected(
        &b.to_bytes(),
        ErrorKind::UnknownTensorType,
        &["unknown tensor type 200", "tensor \"t\""],
    );
    let b = GgufBuilder::new().tensor_id("t", &[32], 4);
    assert_rejected(
        &b.to_bytes(),
        ErrorKind::UnknownTensorType,
        &["Q4_2", "removed"],
    );
}

#[test]
fn duplicates_and_bad_values() {
    let b = GgufBuilder::new()
        .kv("a", MetaValue::U8(1))
        .kv("a", MetaValue::U8(2));
    assert_rejected(
        &b.to_bytes(),
        ErrorKind::Duplicate,
        &["duplicate metadata key", "key \"a\""],
    );
    let b = GgufBuilder::new()
        .tensor("t", &[1], f32())
        .tensor("t", &[1], f32());
    assert_rejected(
        &b.to_bytes(),
        ErrorKind::Duplicate,
        &["duplicate tensor name"],
    );
    let b = GgufBuilder::new().kv(
        "flag",
        MetaValue::Raw {
            type_id: 7,
            bytes: vec![2],
        },
    );
    assert_rejected(&b.to_bytes(), ErrorKind::BadValue, &["bool value is 2"]);
    let b = GgufBuilder::new().kv(
        "s",
        MetaValue::Raw {
            type_id: 8,
            bytes: [2u64.to_le_bytes().to_vec(), vec![0xff, 0xfe]].concat(),
        },
    );
    assert_rejected(&b.to_bytes(), ErrorKind::BadValue, &["not valid UTF-8"]);
    let long = "x".repeat(64);
    let b = GgufBuilder::new().tensor(&long, &[1], f32());
    assert_rejected(
        &b.to_bytes(),
        ErrorKind::TooLong,
        &["tensor name is 64 bytes long", "limit is 63"],
    );
}

#[test]
fn the_committed_fixtures_parse_as_their_names_say() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gguf");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let result = sovereign_gguf::parse_file(&path);
        if name.starts_with("valid") {
            assert!(result.is_ok(), "{name}: {result:?}");
        } else {
            assert!(result.is_err(), "{name} was accepted");
        }
        seen += 1;
    }
    assert!(seen >= 3, "fixtures missing in {}", dir.display());
}
