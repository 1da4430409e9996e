//! The GGUF writer: builds well-formed files (and, by overriding fields, malformed ones)
//! for tests, the fuzzer's corpus and benchmarks. Tensor data is filler bytes unless the
//! caller writes its own ([`GgufBuilder::write_with`], as [`crate::model`] does).

use std::io::{self, Write};

use super::parse::DEFAULT_ALIGNMENT;
use super::types::{GgmlType, ValueType};

/// A metadata value to write.
#[derive(Debug, Clone, PartialEq)]
pub enum MetaValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    Str(String),
    U64(u64),
    I64(i64),
    F64(f64),
    /// Element type and elements (which should all be of that type).
    Array(ValueType, Vec<MetaValue>),
    /// Any type id followed by any bytes: for writing files that must be rejected.
    Raw {
        type_id: u32,
        bytes: Vec<u8>,
    },
}

impl MetaValue {
    pub fn str(s: &str) -> MetaValue {
        MetaValue::Str(s.to_owned())
    }

    fn type_id(&self) -> u32 {
        use MetaValue::*;
        let ty = match self {
            U8(_) => ValueType::U8,
            I8(_) => ValueType::I8,
            U16(_) => ValueType::U16,
            I16(_) => ValueType::I16,
            U32(_) => ValueType::U32,
            I32(_) => ValueType::I32,
            F32(_) => ValueType::F32,
            Bool(_) => ValueType::Bool,
            Str(_) => ValueType::String,
            U64(_) => ValueType::U64,
            I64(_) => ValueType::I64,
            F64(_) => ValueType::F64,
            Array(..) => ValueType::Array,
            Raw { type_id, .. } => return *type_id,
        };
        ty.id()
    }

    /// The value's bytes, without its type id.
    fn encode(&self, out: &mut Vec<u8>) {
        use MetaValue::*;
        match self {
            U8(v) => out.push(*v),
            I8(v) => out.extend(v.to_le_bytes()),
            U16(v) => out.extend(v.to_le_bytes()),
            I16(v) => out.extend(v.to_le_bytes()),
            U32(v) => out.extend(v.to_le_bytes()),
            I32(v) => out.extend(v.to_le_bytes()),
            F32(v) => out.extend(v.to_le_bytes()),
            Bool(v) => out.push(u8::from(*v)),
            Str(s) => put_str(out, s),
            U64(v) => out.extend(v.to_le_bytes()),
            I64(v) => out.extend(v.to_le_bytes()),
            F64(v) => out.extend(v.to_le_bytes()),
            Array(item, values) => {
                out.extend(item.id().to_le_bytes());
                out.extend((values.len() as u64).to_le_bytes());
                for v in values {
                    v.encode(out);
                }
            }
            Raw { bytes, .. } => out.extend(bytes),
        }
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

/// One tensor to write.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorSpec {
    pub name: String,
    /// Dimensions, innermost first.
    pub dims: Vec<u64>,
    /// ggml type id (any number, for hostile files).
    pub type_id: u32,
    /// Data offset to record; `None` places the tensor after the previous one, aligned.
    pub offset: Option<u64>,
}

impl TensorSpec {
    /// Bytes of data this tensor takes (0 for an unknown type or an overflowing shape).
    pub fn n_bytes(&self) -> u64 {
        let Some(t) = GgmlType::from_id(self.type_id) else {
            return 0;
        };
        self.dims
            .iter()
            .try_fold(1u64, |n, &d| n.checked_mul(d))
            .and_then(|n| (n / t.block_size).checked_mul(t.type_size))
            .unwrap_or(0)
    }
}

/// Where a built file's parts lie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Bytes of header before the alignment padding.
    pub header_len: u64,
    /// Start of the data section.
    pub data_offset: u64,
    /// Each tensor's recorded data offset, relative to `data_offset`.
    pub tensor_offsets: Vec<u64>,
    /// Length of the whole file.
    pub file_len: u64,
}

/// A GGUF file under construction.
#[derive(Debug, Clone, PartialEq)]
pub struct GgufBuilder {
    pub version: u32,
    pub metadata: Vec<(String, MetaValue)>,
    pub tensors: Vec<TensorSpec>,
    /// Alignment used to place data; add `general.alignment` to record another than 32.
    pub alignment: u64,
    /// Tensor count to write instead of the real one.
    pub tensor_count: Option<u64>,
    /// Key count to write instead of the real one.
    pub key_count: Option<u64>,
}

impl Default for GgufBuilder {
    fn default() -> Self {
        GgufBuilder {
            version: 3,
            metadata: Vec::new(),
            tensors: Vec::new(),
            alignment: DEFAULT_ALIGNMENT,
            tensor_count: None,
            key_count: None,
        }
    }
}

/// The shape of a generated llama-architecture model.
#[derive(Debug, Clone, Copy)]
pub struct LlamaShape {
    pub layers: u64,
    pub embedding: u64,
    pub feed_forward: u64,
    pub vocab: u64,
    pub context: u64,
    /// Type of the large matrices (norms stay F32).
    pub ggml_type: GgmlType,
    /// `general.file_type` to record.
    pub file_type: u32,
}

impl LlamaShape {
    /// A few kilobytes: for tests.
    pub fn tiny() -> LlamaShape {
        LlamaShape {
            layers: 2,
            embedding: 64,
            feed_forward: 128,
            vocab: 32,
            context: 2048,
            ggml_type: GgmlType::from_id(1).unwrap_or(F32),
            file_type: 1,
        }
    }
}

const F32: GgmlType = GgmlType {
    id: 0,
    name: "F32",
    block_size: 1,
    type_size: 4,
};

impl GgufBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// A llama-shaped header: the keys and tensors llama.cpp's llama loader looks for.
    pub fn llama(shape: LlamaShape) -> Self {
        let n = shape.embedding;
        let t = shape.ggml_type.id;
        let mut b = GgufBuilder::new()
            .kv("general.architecture", MetaValue::str("llama"))
            .kv("general.name", MetaValue::str("sovereign-generated"))
            .kv("general.file_type", MetaValue::U32(shape.file_type))
            .kv("llama.context_length", MetaValue::U32(shape.context as u32))
            .kv("llama.embedding_length", MetaValue::U32(n as u32))
            .kv("llama.block_count", MetaValue::U32(shape.layers as u32))
            .kv(
                "llama.feed_forward_length",
                MetaValue::U32(shape.feed_forward as u32),
            )
            .kv("llama.attention.head_count", MetaValue::U32(4))
            .kv("tokenizer.ggml.model", MetaValue::str("llama"))
            .kv(
                "tokenizer.ggml.tokens",
                MetaValue::Array(
                    ValueType::String,
                    (0..shape.vocab)
                        .map(|i| MetaValue::Str(format!("<0x{i:02X}>")))
                        .collect(),
                ),
            )
            .tensor_id("token_embd.weight", &[n, shape.vocab], t);
        for l in 0..shape.layers {
            b = b
                .tensor_id(&format!("blk.{l}.attn_norm.weight"), &[n], 0)
                .tensor_id(&format!("blk.{l}.attn_q.weight"), &[n, n], t)
                .tensor_id(&format!("blk.{l}.attn_k.weight"), &[n, n], t)
                .tensor_id(&format!("blk.{l}.attn_v.weight"), &[n, n], t)
                .tensor_id(&format!("blk.{l}.attn_output.weight"), &[n, n], t)
                .tensor_id(&format!("blk.{l}.ffn_norm.weight"), &[n], 0)
                .tensor_id(
                    &format!("blk.{l}.ffn_gate.weight"),
                    &[n, shape.feed_forward],
                    t,
                )
                .tensor_id(
                    &format!("blk.{l}.ffn_up.weight"),
                    &[n, shape.feed_forward],
                    t,
                )
                .tensor_id(
                    &format!("blk.{l}.ffn_down.weight"),
                    &[shape.feed_forward, n],
                    t,
                );
        }
        b.tensor_id("output_norm.weight", &[n], 0)
            .tensor_id("output.weight", &[n, shape.vocab], t)
    }

    pub fn kv(mut self, key: &str, value: MetaValue) -> Self {
        self.metadata.push((key.to_owned(), value));
        self
    }

    pub fn tensor(self, name: &str, dims: &[u64], ty: GgmlType) -> Self {
        self.tensor_id(name, dims, ty.id)
    }

    pub fn tensor_id(mut self, name: &str, dims: &[u64], type_id: u32) -> Self {
        self.tensors.push(TensorSpec {
            name: name.to_owned(),
            dims: dims.to_vec(),
            type_id,
            offset: None,
        });
        self
    }

    /// The header bytes, without padding.
    pub fn header(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend(b"GGUF");
        out.extend(self.version.to_le_bytes());
        let tensors = self.tensor_count.unwrap_or(self.tensors.len() as u64);
        let keys = self.key_count.unwrap_or(self.metadata.len() as u64);
        out.extend(tensors.to_le_bytes());
        out.extend(keys.to_le_bytes());
        for (key, value) in &self.metadata {
            put_str(&mut out, key);
            out.extend(value.type_id().to_le_bytes());
            value.encode(&mut out);
        }
        for (spec, offset) in self.tensors.iter().zip(self.offsets()) {
            put_str(&mut out, &spec.name);
            out.extend((spec.dims.len() as u32).to_le_bytes());
            for d in &spec.dims {
                out.extend(d.to_le_bytes());
            }
            out.extend(spec.type_id.to_le_bytes());
            out.extend(offset.to_le_bytes());
        }
        out
    }

    fn offsets(&self) -> Vec<u64> {
        let mut next = 0u64;
        self.tensors
            .iter()
            .map(|spec| {
                let at = spec.offset.unwrap_or(next);
                next = align(at.saturating_add(spec.n_bytes()), self.alignment);
                at
            })
            .collect()
    }

    pub fn layout(&self) -> Layout {
        let header_len = self.header().len() as u64;
        let data_offset = align(header_len, self.alignment);
        let tensor_offsets = self.offsets();
        let data_len = self
            .tensors
            .iter()
            .zip(&tensor_offsets)
            .map(|(spec, off)| off.saturating_add(spec.n_bytes()))
            .max()
            .unwrap_or(0);
        Layout {
            header_len,
            data_offset,
            tensor_offsets,
            file_len: data_offset.saturating_add(data_len),
        }
    }

    /// Write the whole file: header, padding, tensor data (filler bytes).
    pub fn write_to(&self, w: &mut dyn Write) -> io::Result<u64> {
        let filler = filler_block();
        self.write_with(w, |i, w| {
            let mut left = self.tensors.get(i).map_or(0, TensorSpec::n_bytes);
            while left > 0 {
                let n = left.min(filler.len() as u64) as usize;
                w.write_all(filler.get(..n).unwrap_or(&filler))?;
                left -= n as u64;
            }
            Ok(())
        })
    }

    /// Write the whole file: header, padding, and each tensor's data as `data` writes it
    /// (called once per tensor, in order, with the tensor's index; it must write exactly
    /// [`TensorSpec::n_bytes`] bytes, or the write fails). Returns the file's length.
    pub fn write_with(
        &self,
        w: &mut dyn Write,
        mut data: impl FnMut(usize, &mut dyn Write) -> io::Result<()>,
    ) -> io::Result<u64> {
        let header = self.header();
        let layout = self.layout();
        w.write_all(&header)?;
        write_zeros(w, layout.data_offset - header.len() as u64)?;
        let mut at = 0u64;
        for (i, (spec, &off)) in self.tensors.iter().zip(&layout.tensor_offsets).enumerate() {
            if off > at {
                write_zeros(w, off - at)?;
                at = off;
            }
            let mut counted = Counted {
                inner: &mut *w,
                n: 0,
            };
            data(i, &mut counted)?;
            if counted.n != spec.n_bytes() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "tensor {} got {} bytes of data, not {}",
                        spec.name,
                        counted.n,
                        spec.n_bytes()
                    ),
                ));
            }
            at = at.saturating_add(spec.n_bytes());
        }
        Ok(layout.file_len)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        // Writing to a Vec cannot fail.
        self.write_to(&mut out).ok();
        out
    }

    /// Write the file to `path`.
    // A file format's writer: it writes where its caller (the model generator, a test)
    // says, never a path of the machine sovereign manages.
    #[allow(clippy::disallowed_methods)]
    pub fn write_file(&self, path: &std::path::Path) -> io::Result<u64> {
        let mut w = io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
        let n = self.write_to(&mut w)?;
        w.flush()?;
        Ok(n)
    }
}

/// A writer that counts what passes through it.
struct Counted<'a> {
    inner: &'a mut dyn Write,
    n: u64,
}

impl Write for Counted<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.n += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn align(x: u64, alignment: u64) -> u64 {
    let a = alignment.max(1);
    x.div_ceil(a).saturating_mul(a)
}

fn write_zeros(w: &mut dyn Write, mut n: u64) -> io::Result<()> {
    let zeros = [0u8; 4096];
    while n > 0 {
        let k = n.min(zeros.len() as u64) as usize;
        w.write_all(zeros.get(..k).unwrap_or(&zeros))?;
        n -= k as u64;
    }
    Ok(())
}

/// A MiB of pseudo-random bytes (xorshift), repeated as tensor data.
fn filler_block() -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut out = Vec::with_capacity(1 << 20);
    while out.len() < 1 << 20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend(x.to_le_bytes());
    }
    out
}
