//! The memory a model needs at a context length, from its GGUF header alone, and whether
//! that fits the memory the machine has: a model that spills out of VRAM (or into swap)
//! decodes an order of magnitude slower, so the daemon refuses such a load up front.
//!
//! The parts follow llama.cpp's own buffers:
//! - **weights**: the tensors' bytes as the header states them (llama.cpp maps or copies
//!   exactly these);
//! - **KV cache**: `n_layer x ctx x slots x (K + V width) x 2` bytes (f16 cells; the width
//!   is `n_head_kv x head dim`), with each slot's context padded to 256 cells as llama.cpp
//!   pads it;
//! - **compute buffer**: the activations of one micro-batch of `batch` tokens, which
//!   llama.cpp's graph allocator reserves once. Approximated as
//!   `batch x (4 x (3 x n_ff + 5 x n_embd + n_vocab) + 2 x ctx)` bytes: three f32
//!   feed-forward intermediates, five f32 hidden-state tensors (input, norm, residual,
//!   attention in and out), the f32 logits and the f16 attention mask over one slot's
//!   context (flash attention, which llama.cpp enables by default where the backend has
//!   it, never materializes the full score matrix). BENCHMARKS.md compares the result
//!   with llama.cpp's reported buffers.

use serde::{Deserialize, Serialize};

use crate::gguf::Header;
use crate::units::{ByteStyle, human_bytes};

/// llama.cpp pads each sequence's KV cells to a multiple of this.
const KV_PAD: u64 = 256;

/// What the estimate reads from a header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shape {
    pub layers: u64,
    pub embedding: u64,
    pub feed_forward: u64,
    pub heads: u64,
    pub heads_kv: u64,
    pub key_length: u64,
    pub value_length: u64,
    pub vocab: u64,
    /// Bytes of all tensors.
    pub weights: u64,
    /// The context the model was trained for, when the header says.
    pub context_length: Option<u64>,
}

impl Shape {
    /// Read the shape of a transformer from its header; a header without the keys an
    /// estimate needs is an error naming the first missing key.
    pub fn of(header: &Header) -> Result<Shape, String> {
        let arch = header
            .get("general.architecture")
            .and_then(|v| v.as_str())
            .ok_or("the header has no general.architecture")?;
        let key = |k: &str| format!("{arch}.{k}");
        let num = |k: &str| header.get(&key(k)).and_then(|v| v.as_u64());
        let need = |k: &str| {
            num(k)
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("the header has no {}", key(k)))
        };
        let layers = need("block_count")?;
        let embedding = need("embedding_length")?;
        let heads = need("attention.head_count")?;
        // Some architectures store a per-layer array here; the head count is then the
        // conservative stand-in.
        let heads_kv = num("attention.head_count_kv")
            .filter(|n| *n > 0)
            .unwrap_or(heads);
        let head_dim = embedding / heads;
        let vocab = num("vocab_size")
            .or_else(|| match header.get("tokenizer.ggml.tokens") {
                Some(super::gguf::Value::Array { len, .. }) => Some(*len),
                _ => None,
            })
            .unwrap_or(0);
        Ok(Shape {
            layers,
            embedding,
            feed_forward: num("feed_forward_length").unwrap_or(4 * embedding),
            heads,
            heads_kv,
            key_length: num("attention.key_length").unwrap_or(head_dim),
            value_length: num("attention.value_length").unwrap_or(head_dim),
            vocab,
            weights: header
                .tensors
                .iter()
                .fold(0u64, |sum, t| sum.saturating_add(t.n_bytes)),
            context_length: num("context_length"),
        })
    }
}

/// Bytes a model needs, by part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Estimate {
    /// Context length of one slot.
    #[serde(rename = "context", alias = "ctx")]
    pub ctx: u64,
    pub slots: u64,
    pub weights_bytes: u64,
    pub kv_cache_bytes: u64,
    pub compute_bytes: u64,
    pub total_bytes: u64,
}

/// The estimate for `slots` sequences of `ctx` tokens decoded in micro-batches of `batch`.
pub fn estimate(shape: &Shape, ctx: u64, slots: u64, batch: u64) -> Estimate {
    let cells = ctx.div_ceil(KV_PAD).saturating_mul(KV_PAD);
    let width = shape
        .heads_kv
        .saturating_mul(shape.key_length.saturating_add(shape.value_length));
    let kv = shape
        .layers
        .saturating_mul(cells)
        .saturating_mul(slots)
        .saturating_mul(width)
        .saturating_mul(2);
    let per_token = 4u64
        .saturating_mul(
            (3 * shape.feed_forward)
                .saturating_add(5 * shape.embedding)
                .saturating_add(shape.vocab),
        )
        .saturating_add(2 * cells);
    let compute = batch.saturating_mul(per_token);
    Estimate {
        ctx,
        slots,
        weights_bytes: shape.weights,
        kv_cache_bytes: kv,
        compute_bytes: compute,
        total_bytes: shape.weights.saturating_add(kv).saturating_add(compute),
    }
}

/// Which memory a model is held in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemoryKind {
    /// GPU memory (every layer offloaded).
    Vram,
    /// Apple Silicon: CPU and GPU share it.
    Unified,
    /// System memory: no offload.
    Ram,
    /// GPU memory and system memory together: some layers offloaded.
    Split,
    /// A budget given with `--memory-limit`.
    Limit,
}

/// One place memory is available.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    pub name: String,
    pub bytes: u64,
}

/// The memory the daemon may fill with models, detected at start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Budget {
    pub kind: MemoryKind,
    pub devices: Vec<Device>,
}

/// The machine's memory as a budget reads it. The caller builds it from hardware
/// detection (the daemon crate detects nothing itself).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Machine {
    /// System memory in bytes, and what of it the kernel reports available (`None`
    /// where it reports nothing).
    pub ram_total_bytes: u64,
    pub ram_available_bytes: Option<u64>,
    /// The GPUs, in detection order.
    pub gpus: Vec<MachineGpu>,
}

/// One GPU of a [`Machine`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MachineGpu {
    /// Its marketing name, when known.
    pub name: Option<String>,
    /// Its own memory in bytes, when known.
    pub vram_bytes: Option<u64>,
    /// Whether it shares system memory (Apple Silicon).
    pub unified_memory: bool,
}

/// How much of a model goes to the GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offload {
    None,
    Partial,
    Full,
}

impl Budget {
    pub fn limit(bytes: u64) -> Budget {
        Budget {
            kind: MemoryKind::Limit,
            devices: vec![Device {
                name: "--memory-limit".into(),
                bytes,
            }],
        }
    }

    /// The memory available for a model offloaded as `offload`: VRAM per GPU, unified
    /// memory on Apple Silicon, else the RAM the kernel reports available.
    pub fn of(machine: &Machine, offload: Offload) -> Budget {
        let ram = Device {
            name: "RAM".into(),
            bytes: machine
                .ram_available_bytes
                .unwrap_or(machine.ram_total_bytes),
        };
        if offload == Offload::None {
            return Budget {
                kind: MemoryKind::Ram,
                devices: vec![ram],
            };
        }
        if machine.gpus.iter().any(|g| g.unified_memory) {
            return Budget {
                kind: MemoryKind::Unified,
                devices: vec![Device {
                    name: "unified memory".into(),
                    bytes: ram.bytes,
                }],
            };
        }
        let gpus: Vec<Device> = machine
            .gpus
            .iter()
            .enumerate()
            .filter_map(|(i, g)| {
                g.vram_bytes.map(|bytes| Device {
                    name: format!("GPU{i} {}", g.name.as_deref().unwrap_or(""))
                        .trim()
                        .into(),
                    bytes,
                })
            })
            .collect();
        match (gpus.is_empty(), offload) {
            (true, _) => Budget {
                kind: MemoryKind::Ram,
                devices: vec![ram],
            },
            (false, Offload::Full) => Budget {
                kind: MemoryKind::Vram,
                devices: gpus,
            },
            (false, _) => Budget {
                kind: MemoryKind::Split,
                devices: gpus.into_iter().chain([ram]).collect(),
            },
        }
    }

    pub fn total(&self) -> u64 {
        self.devices
            .iter()
            .fold(0u64, |s, d| s.saturating_add(d.bytes))
    }

    /// `Ok` when `need` fits beside `in_use` bytes already held by loaded models; else the
    /// refusal with every number.
    pub fn check(&self, model: &str, need: &Estimate, in_use: u64) -> Result<(), String> {
        let free = self.total().saturating_sub(in_use);
        if need.total_bytes <= free {
            return Ok(());
        }
        let devices = self
            .devices
            .iter()
            .map(|d| format!("{} {}", d.name, human_bytes(d.bytes, ByteStyle::Short)))
            .collect::<Vec<_>>()
            .join(", ");
        Err(format!(
            "the model {model} does not fit: it needs {} at context {} x {} slot(s) (weights {}, KV cache {}, compute buffers {}) but {} is free ({devices}; {} held by loaded models); unload a model, load it with a smaller --context, or force the load",
            human_bytes(need.total_bytes, ByteStyle::Short),
            need.ctx,
            need.slots,
            human_bytes(need.weights_bytes, ByteStyle::Short),
            human_bytes(need.kv_cache_bytes, ByteStyle::Short),
            human_bytes(need.compute_bytes, ByteStyle::Short),
            human_bytes(free, ByteStyle::Short),
            human_bytes(in_use, ByteStyle::Short),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::write::{GgufBuilder, LlamaShape, MetaValue};
    use crate::gguf::{GgmlType, parse_bytes};

    fn header(shape: LlamaShape, extra: &[(&str, u32)]) -> Header {
        let mut b = GgufBuilder::llama(shape);
        for (k, v) in extra {
            b = b.kv(k, MetaValue::U32(*v));
        }
        parse_bytes(&b.to_bytes()).unwrap()
    }

    #[test]
    fn parts_follow_the_header() {
        let shape = LlamaShape::tiny();
        let h = header(shape, &[("llama.attention.head_count_kv", 2)]);
        let s = Shape::of(&h).unwrap();
        assert_eq!((s.layers, s.embedding, s.heads, s.heads_kv), (2, 64, 4, 2));
        assert_eq!((s.key_length, s.value_length, s.vocab), (16, 16, 32));
        let tensor_bytes: u64 = h.tensors.iter().map(|t| t.n_bytes).sum();
        assert_eq!(s.weights, tensor_bytes);

        let e = estimate(&s, 1000, 3, 512);
        // 1000 cells pad to 1024; K and V are 2 heads x 16 wide each, f16.
        assert_eq!(e.kv_cache_bytes, 2 * 1024 * 3 * (2 * (16 + 16)) * 2);
        assert_eq!(e.weights_bytes, tensor_bytes);
        assert_eq!(
            e.total_bytes,
            e.weights_bytes + e.kv_cache_bytes + e.compute_bytes
        );
        // Twice the context or twice the slots: twice the KV cache.
        assert_eq!(
            estimate(&s, 2048, 3, 512).kv_cache_bytes,
            2 * e.kv_cache_bytes
        );
        assert_eq!(
            estimate(&s, 1000, 6, 512).kv_cache_bytes,
            2 * e.kv_cache_bytes
        );
    }

    #[test]
    fn kv_heads_default_to_heads_and_a_missing_key_is_named() {
        let s = Shape::of(&header(LlamaShape::tiny(), &[])).unwrap();
        assert_eq!(s.heads_kv, s.heads);
        let bare = GgufBuilder::new()
            .kv("general.architecture", MetaValue::str("llama"))
            .tensor("x", &[4], GgmlType::by_name("F32").unwrap());
        let e = Shape::of(&parse_bytes(&bare.to_bytes()).unwrap()).unwrap_err();
        assert!(e.contains("llama.block_count"), "{e}");
    }

    #[test]
    fn refuses_a_model_bigger_than_the_budget_with_the_numbers() {
        let s = Shape::of(&header(LlamaShape::tiny(), &[])).unwrap();
        let e = estimate(&s, 4096, 4, 512);
        let budget = Budget::limit(e.total_bytes - 1);
        let why = budget.check("tiny", &e, 0).unwrap_err();
        for part in [
            "weights",
            "KV cache",
            "compute buffers",
            "--memory-limit",
            "context 4096",
        ] {
            assert!(why.contains(part), "{part} missing: {why}");
        }
        assert!(Budget::limit(e.total_bytes).check("tiny", &e, 0).is_ok());
        // What loaded models hold counts against the budget.
        assert!(
            Budget::limit(e.total_bytes + 10)
                .check("tiny", &e, 11)
                .is_err()
        );
    }

    #[test]
    fn budget_follows_the_hardware() {
        let gpu = |vram, unified| MachineGpu {
            name: Some("RTX".into()),
            vram_bytes: vram,
            unified_memory: unified,
        };
        let machine = |gpus| Machine {
            ram_total_bytes: 64 << 30,
            ram_available_bytes: Some(40 << 30),
            gpus,
        };
        let two = machine(vec![gpu(Some(24 << 30), false), gpu(Some(24 << 30), false)]);
        let b = Budget::of(&two, Offload::Full);
        assert_eq!((b.kind, b.total()), (MemoryKind::Vram, 48 << 30));
        assert_eq!(b.devices[1].name, "GPU1 RTX");
        assert_eq!(Budget::of(&two, Offload::None).total(), 40 << 30);
        assert_eq!(Budget::of(&two, Offload::Partial).total(), 88u64 << 30);
        let mac = machine(vec![gpu(None, true)]);
        assert_eq!(Budget::of(&mac, Offload::Full).kind, MemoryKind::Unified);
        let none = machine(vec![]);
        assert_eq!(Budget::of(&none, Offload::Full).kind, MemoryKind::Ram);
    }
}
