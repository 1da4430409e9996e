//! The few facts `model ls` shows, drawn from a validated header.

use std::collections::HashMap;

use super::parse::Header;
use super::types::file_type_name;

/// What a model is, from its header: recorded in the cache's manifest at pull time.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Summary {
    /// GGUF version (2 or 3).
    pub version: u32,
    /// `general.architecture` (`llama`, `qwen2`, ...).
    pub architecture: Option<String>,
    /// `general.name`, as the converter wrote it.
    pub model_name: Option<String>,
    /// Elements over all tensors.
    pub parameter_count: u64,
    /// `general.file_type` by name, else the type holding most of the bytes.
    pub quantization: Option<String>,
    /// `<architecture>.context_length`: the context the model was trained for.
    pub context_length: Option<u64>,
    pub tensor_count: u64,
}

impl Summary {
    pub fn of(header: &Header) -> Summary {
        let architecture = header
            .get("general.architecture")
            .and_then(|v| v.as_str())
            .map(str::to_owned);
        let context_length = architecture
            .as_deref()
            .and_then(|a| header.get(&format!("{a}.context_length")))
            .and_then(|v| v.as_u64());
        let quantization = header
            .get("general.file_type")
            .and_then(|v| v.as_u64())
            .and_then(file_type_name)
            .map(str::to_owned)
            .or_else(|| dominant_type(header));
        Summary {
            version: header.version,
            architecture,
            model_name: header
                .get("general.name")
                .and_then(|v| v.as_str())
                .map(str::to_owned),
            parameter_count: header
                .tensors
                .iter()
                .fold(0u64, |sum, t| sum.saturating_add(t.n_elements)),
            quantization,
            context_length,
            tensor_count: header.tensors.len() as u64,
        }
    }
}

/// The tensor type that holds the most bytes: the file's quantization in practice.
fn dominant_type(header: &Header) -> Option<String> {
    let mut bytes: HashMap<&str, u64> = HashMap::new();
    for t in &header.tensors {
        let entry = bytes.entry(t.ggml_type.name).or_default();
        *entry = entry.saturating_add(t.n_bytes);
    }
    bytes
        .into_iter()
        .max_by_key(|&(name, n)| (n, name))
        .map(|(name, _)| name.to_owned())
}

/// `7.2B`, `135M`: a parameter count as people say it.
pub fn human_count(n: u64) -> String {
    let f = n as f64;
    if n >= 1_000_000_000 {
        format!("{:.1}B", f / 1e9)
    } else if n >= 1_000_000 {
        format!("{:.0}M", f / 1e6)
    } else if n >= 1_000 {
        format!("{:.0}K", f / 1e3)
    } else {
        n.to_string()
    }
}
