//! A bounded, deterministic run of the GGUF fuzzer inside the test suite: every corpus
//! seed, then thousands of mutants of each (bit flips, truncations, interesting values in
//! length and count fields), asserting the parser returns instead of panicking.
//! The open-ended run is `cargo run --release -p sovereign-fuzz -- --seconds N`.

#[path = "../../../fuzz/src/mutate.rs"]
mod mutate;

use std::path::Path;

use sovereign_gguf::{self as gguf, ErrorKind};

fn corpus() -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/gguf");
    let mut seeds: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect();
    seeds.sort();
    seeds
}

fn parse_without_panic(input: &[u8], what: &str) -> Result<gguf::Header, gguf::GgufError> {
    match std::panic::catch_unwind(|| gguf::parse_bytes(input)) {
        Ok(result) => result,
        Err(_) => panic!(
            "the parser panicked on {what} ({} bytes): {input:02x?}",
            input.len()
        ),
    }
}

#[test]
fn the_corpus_parses_as_its_names_say() {
    let seeds = corpus();
    assert!(seeds.len() >= 5, "the corpus is missing");
    for (name, bytes) in &seeds {
        let result = parse_without_panic(bytes, name);
        assert_eq!(
            result.is_ok(),
            name.starts_with("valid"),
            "{name}: {result:?}"
        );
    }
}

#[test]
fn thousands_of_mutants_never_panic() {
    let mut rng = mutate::Rng::new(0x5eed);
    let mut rejected = 0u32;
    let mut total = 0u32;
    for (name, seed) in corpus() {
        for i in 0..600 {
            let input = mutate::mutant(&seed, &mut rng);
            total += 1;
            if let Err(e) = parse_without_panic(&input, &format!("mutant {i} of {name}")) {
                rejected += 1;
                // Every rejection says where; none is an I/O failure on in-memory bytes.
                assert_ne!(e.kind, ErrorKind::Io, "{e}");
                assert!(e.offset <= input.len() as u64, "offset past the input: {e}");
            }
        }
    }
    assert!(
        rejected > total / 2,
        "only {rejected} of {total} mutants rejected: the mutations are too weak"
    );
}

#[test]
fn every_truncation_of_a_valid_file_is_rejected() {
    let (_, seed) = corpus()
        .into_iter()
        .find(|(n, _)| n == "valid-v3-f32.gguf")
        .unwrap();
    for cut in 0..seed.len() {
        let err = parse_without_panic(&seed[..cut], "a truncation").unwrap_err();
        assert!(
            matches!(
                err.kind,
                ErrorKind::Empty | ErrorKind::Truncated | ErrorKind::OutOfFile
            ),
            "cut at {cut}: {err}"
        );
    }
}

#[test]
fn huge_values_in_every_u64_field_are_handled() {
    // Set each 8-byte window of the header, in turn, to values that are hostile as a
    // count, a length, a dimension or an offset.
    let (_, seed) = corpus()
        .into_iter()
        .find(|(n, _)| n == "valid-nested-aligned64.gguf")
        .unwrap();
    let header_len = seed.len().min(700);
    for at in 0..header_len.saturating_sub(8) {
        for v in [u64::MAX, 1 << 63, (1 << 32) + 7, seed.len() as u64 + 1] {
            let mut input = seed.clone();
            input[at..at + 8].copy_from_slice(&v.to_le_bytes());
            parse_without_panic(&input, &format!("{v:#x} at byte {at}")).ok();
        }
    }
}
