//! The header parser: magic, version, metadata and tensor infos, then the layout checks
//! (alignment, order, bounds) that llama.cpp would otherwise trust.

use std::collections::HashSet;
use std::io::Read;

use super::error::{ErrorKind, GgufError};
use super::reader::Reader;
use super::types::{GgmlType, ValueType};

/// Limits on what a header may announce. Real models stay far below each of them
/// (a few hundred keys, a few thousand tensors, a vocabulary of some 10^5 strings).
pub mod limits {
    /// Tensors in one file.
    pub const MAX_TENSORS: u64 = 1 << 20;
    /// Metadata keys in one file.
    pub const MAX_KEYS: u64 = 1 << 16;
    /// Bytes in a metadata key (the GGUF specification's own bound).
    pub const MAX_KEY_LEN: u64 = 65_535;
    /// Bytes in a tensor name (ggml's GGML_MAX_NAME, counting its terminating zero).
    pub const MAX_TENSOR_NAME_LEN: u64 = 63;
    /// Bytes in one string value (chat templates are the largest, some 10^4 bytes).
    pub const MAX_STRING_LEN: u64 = 16 << 20;
    /// Elements in one array (vocabularies and merge lists are the largest).
    pub const MAX_ARRAY_LEN: u64 = 1 << 24;
    /// How deep arrays may nest: an array of arrays, no deeper.
    pub const MAX_ARRAY_DEPTH: u32 = 2;
    /// Bytes of metadata kept in memory (keys, and strings outside arrays).
    pub const MAX_KEPT_METADATA: u64 = 64 << 20;
    /// Largest `general.alignment` accepted.
    pub const MAX_ALIGNMENT: u64 = 1 << 20;
    /// Dimensions of one tensor (ggml's GGML_MAX_DIMS).
    pub const MAX_DIMS: u32 = 4;
}

/// The alignment of tensor data when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;

/// A metadata value. Arrays are checked element by element but kept only as their
/// element type and length: no caller needs a vocabulary, and keeping one would let
/// a file decide how much memory the parser takes.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    U64(u64),
    I64(i64),
    F64(f64),
    Array { item: ValueType, len: u64 },
}

impl Value {
    /// The value as an unsigned integer, when it is a non-negative integer of any width.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v.into()),
            Value::U16(v) => Some(v.into()),
            Value::U32(v) => Some(v.into()),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }
}

/// One tensor's description, checked: known type, sane shape, data inside the file.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// Dimensions, innermost first (ggml's `ne`).
    pub dims: Vec<u64>,
    pub ggml_type: GgmlType,
    /// Offset of the data from the start of the data section.
    pub offset: u64,
    /// Elements: the product of `dims`.
    pub n_elements: u64,
    /// Bytes of data.
    pub n_bytes: u64,
}

/// A validated GGUF header.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    pub version: u32,
    /// Metadata in file order.
    pub metadata: Vec<(String, Value)>,
    pub tensors: Vec<TensorInfo>,
    /// Alignment of tensor data (`general.alignment` or 32).
    pub alignment: u64,
    /// Absolute offset where the data section starts.
    pub data_offset: u64,
    /// Length of the file the header was read from.
    pub file_len: u64,
}

impl Header {
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
}

type Result<T> = std::result::Result<T, GgufError>;

/// Parse and check a GGUF header from `input`, a file of `file_len` bytes read from its
/// start. Reads only the header; tensor data is checked for position, not content.
pub fn parse<R: Read>(input: R, file_len: u64) -> Result<Header> {
    let mut r = Reader::new(input, file_len);
    if file_len == 0 {
        return Err(GgufError::new(ErrorKind::Empty, 0, "the file is empty"));
    }
    let magic: [u8; 4] = r.bytes("the magic number")?;
    if &magic != b"GGUF" {
        return Err(GgufError::new(
            ErrorKind::BadMagic,
            0,
            format!(
                "not a GGUF file: the magic number is {:?}, expected \"GGUF\"",
                String::from_utf8_lossy(&magic)
            ),
        ));
    }
    let version = r.u32("the version")?;
    check_version(version)?;
    let tensor_count = count(&mut r, "tensor count", limits::MAX_TENSORS, MIN_TENSOR_INFO)?;
    let key_count = count(
        &mut r,
        "metadata key count",
        limits::MAX_KEYS,
        MIN_KEY_VALUE,
    )?;

    let mut kept = 0u64;
    let mut metadata: Vec<(String, Value)> = Vec::new();
    let mut keys = HashSet::new();
    for index in 0..key_count {
        let at = r.pos();
        let key = r
            .string(limits::MAX_KEY_LEN, "metadata key")
            .map_err(|e| e.at(|| format!("key #{index}")))?;
        keep(&mut kept, key.len() as u64, at)?;
        if !keys.insert(key.clone()) {
            return Err(
                GgufError::new(ErrorKind::Duplicate, at, "duplicate metadata key")
                    .at(|| format!("key {key:?}")),
            );
        }
        let value =
            read_keyed_value(&mut r, &mut kept).map_err(|e| e.at(|| format!("key {key:?}")))?;
        metadata.push((key, value));
    }

    let alignment = alignment(&metadata)?;
    let mut tensors: Vec<TensorInfo> = Vec::new();
    let mut names = HashSet::new();
    for index in 0..tensor_count {
        let at = r.pos();
        let name = r
            .string(limits::MAX_TENSOR_NAME_LEN, "tensor name")
            .map_err(|e| e.at(|| format!("tensor #{index}")))?;
        if !names.insert(name.clone()) {
            return Err(
                GgufError::new(ErrorKind::Duplicate, at, "duplicate tensor name")
                    .at(|| format!("tensor {name:?}")),
            );
        }
        let info = read_tensor_info(&mut r, name.clone())
            .map_err(|e| e.at(|| format!("tensor {name:?}")))?;
        tensors.push(info);
    }

    let data_offset = align_up(r.pos(), alignment).ok_or_else(|| {
        GgufError::new(
            ErrorKind::Overflow,
            r.pos(),
            "data section offset overflows",
        )
    })?;
    if data_offset > file_len && !tensors.is_empty() {
        return Err(GgufError::new(
            ErrorKind::Truncated,
            r.pos(),
            format!(
                "the tensor data section would start at byte {data_offset}, past the end of the file ({file_len} bytes)"
            ),
        ));
    }
    check_layout(&tensors, alignment, data_offset, file_len)?;
    Ok(Header {
        version,
        metadata,
        tensors,
        alignment,
        data_offset,
        file_len,
    })
}

/// Parse a header held in memory (the fuzzer's and the tests' entry point).
pub fn parse_bytes(bytes: &[u8]) -> Result<Header> {
    parse(bytes, bytes.len() as u64)
}

/// Parse the header of the file at `path`.
pub fn parse_file(path: &std::path::Path) -> Result<Header> {
    let io = |e: std::io::Error| {
        GgufError::new(
            ErrorKind::Io,
            0,
            format!("cannot read {}: {e}", path.display()),
        )
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    parse(std::io::BufReader::with_capacity(1 << 16, file), len)
}

/// The fewest bytes a tensor info takes: name length, one dimension, type, offset.
const MIN_TENSOR_INFO: u64 = 8 + 4 + 8 + 4 + 8;
/// The fewest bytes a key-value takes: key length, one byte of key, type, one byte of value.
const MIN_KEY_VALUE: u64 = 8 + 1 + 4 + 1;

fn check_version(version: u32) -> Result<()> {
    match version {
        2 | 3 => Ok(()),
        1 => Err(GgufError::new(
            ErrorKind::BadVersion,
            4,
            "GGUF version 1 is not supported (only 2 and 3); convert the model again with a current llama.cpp",
        )),
        v if v.swap_bytes() == 2 || v.swap_bytes() == 3 => Err(GgufError::new(
            ErrorKind::BadVersion,
            4,
            format!(
                "the file is big-endian (version {}); only little-endian GGUF is supported",
                v.swap_bytes()
            ),
        )),
        v => Err(GgufError::new(
            ErrorKind::BadVersion,
            4,
            format!("unsupported GGUF version {v} (supported: 2 and 3)"),
        )),
    }
}

/// Read a count and check it against its limit and against what the file can hold.
fn count<R: Read>(r: &mut Reader<R>, what: &str, limit: u64, min_each: u64) -> Result<u64> {
    let at = r.pos();
    let n = r.u64(what)?;
    if n > limit {
        return Err(GgufError::new(
            ErrorKind::TooMany,
            at,
            format!("{what} is {n}; the limit is {limit}"),
        ));
    }
    let needed = n.saturating_mul(min_each);
    if needed > r.remaining() {
        return Err(GgufError::new(
            ErrorKind::Truncated,
            at,
            format!(
                "{what} is {n}, which needs at least {needed} bytes, but only {} remain in the file",
                r.remaining()
            ),
        ));
    }
    Ok(n)
}

fn read_keyed_value<R: Read>(r: &mut Reader<R>, kept: &mut u64) -> Result<Value> {
    let ty = value_type(r)?;
    read_value(r, ty, kept)
}

fn value_type<R: Read>(r: &mut Reader<R>) -> Result<ValueType> {
    let at = r.pos();
    let id = r.u32("value type")?;
    ValueType::from_id(id).ok_or_else(|| {
        GgufError::new(
            ErrorKind::UnknownValueType,
            at,
            format!("unknown value type {id} (known: 0 to 12)"),
        )
    })
}

fn read_value<R: Read>(r: &mut Reader<R>, ty: ValueType, kept: &mut u64) -> Result<Value> {
    Ok(match ty {
        ValueType::U8 => Value::U8(r.u8("u8 value")?),
        ValueType::I8 => Value::I8(r.u8("i8 value")? as i8),
        ValueType::U16 => Value::U16(r.u16("u16 value")?),
        ValueType::I16 => Value::I16(r.u16("i16 value")? as i16),
        ValueType::U32 => Value::U32(r.u32("u32 value")?),
        ValueType::I32 => Value::I32(r.u32("i32 value")? as i32),
        ValueType::F32 => Value::F32(f32::from_bits(r.u32("f32 value")?)),
        ValueType::U64 => Value::U64(r.u64("u64 value")?),
        ValueType::I64 => Value::I64(r.u64("i64 value")? as i64),
        ValueType::F64 => Value::F64(f64::from_bits(r.u64("f64 value")?)),
        ValueType::Bool => Value::Bool(read_bool(r)?),
        ValueType::String => {
            let at = r.pos();
            let s = r.string(limits::MAX_STRING_LEN, "string value")?;
            keep(kept, s.len() as u64, at)?;
            Value::String(s)
        }
        ValueType::Array => {
            let (item, len) = skip_array(r, 1)?;
            Value::Array { item, len }
        }
    })
}

/// Count `n` more bytes of keys and strings held in memory against the budget.
fn keep(kept: &mut u64, n: u64, at: u64) -> Result<()> {
    *kept = kept.saturating_add(n);
    if *kept > limits::MAX_KEPT_METADATA {
        return Err(GgufError::new(
            ErrorKind::TooLong,
            at,
            format!(
                "metadata keys and strings add up to more than {} bytes",
                limits::MAX_KEPT_METADATA
            ),
        ));
    }
    Ok(())
}

fn read_bool<R: Read>(r: &mut Reader<R>) -> Result<bool> {
    let at = r.pos();
    match r.u8("bool value")? {
        0 => Ok(false),
        1 => Ok(true),
        b => Err(GgufError::new(
            ErrorKind::BadValue,
            at,
            format!("bool value is {b}; only 0 and 1 are valid"),
        )),
    }
}

/// Check an array (at nesting `depth`, 1 for a top-level one) without keeping it.
fn skip_array<R: Read>(r: &mut Reader<R>, depth: u32) -> Result<(ValueType, u64)> {
    let item = value_type(r)?;
    let at = r.pos();
    let len = r.u64("array length")?;
    if len > limits::MAX_ARRAY_LEN {
        return Err(GgufError::new(
            ErrorKind::TooMany,
            at,
            format!(
                "array has {len} elements; the limit is {}",
                limits::MAX_ARRAY_LEN
            ),
        ));
    }
    let needed = len.saturating_mul(item.min_size());
    if needed > r.remaining() {
        return Err(GgufError::new(
            ErrorKind::Truncated,
            at,
            format!(
                "array of {len} {item:?} elements needs at least {needed} bytes but only {} remain in the file",
                r.remaining()
            ),
        ));
    }
    match item {
        ValueType::Array => {
            if depth >= limits::MAX_ARRAY_DEPTH {
                return Err(GgufError::new(
                    ErrorKind::TooDeep,
                    at,
                    format!("arrays nested more than {} deep", limits::MAX_ARRAY_DEPTH),
                ));
            }
            for _ in 0..len {
                skip_array(r, depth + 1)?;
            }
        }
        ValueType::String => {
            for _ in 0..len {
                r.skip_string(limits::MAX_STRING_LEN, "string in array")?;
            }
        }
        ValueType::Bool => {
            for _ in 0..len {
                read_bool(r)?;
            }
        }
        fixed => {
            // The size is known and the product was checked against the file above.
            r.skip(len.saturating_mul(fixed.min_size()), "array elements")?;
        }
    }
    Ok((item, len))
}

fn alignment(metadata: &[(String, Value)]) -> Result<u64> {
    let Some((_, value)) = metadata.iter().find(|(k, _)| k == "general.alignment") else {
        return Ok(DEFAULT_ALIGNMENT);
    };
    let bad = |msg: String| {
        GgufError::new(ErrorKind::BadValue, 0, msg).at(|| "key \"general.alignment\"".into())
    };
    let Value::U32(a) = *value else {
        return Err(bad(format!(
            "general.alignment must be a u32, found {value:?}"
        )));
    };
    let a = u64::from(a);
    if a == 0 || !a.is_power_of_two() || a > limits::MAX_ALIGNMENT {
        return Err(bad(format!(
            "general.alignment is {a}; it must be a power of two from 1 to {}",
            limits::MAX_ALIGNMENT
        )));
    }
    Ok(a)
}

fn read_tensor_info<R: Read>(r: &mut Reader<R>, name: String) -> Result<TensorInfo> {
    let at = r.pos();
    let n_dims = r.u32("dimension count")?;
    if n_dims == 0 || n_dims > limits::MAX_DIMS {
        return Err(GgufError::new(
            ErrorKind::BadDimensions,
            at,
            format!(
                "{n_dims} dimensions; a tensor has 1 to {}",
                limits::MAX_DIMS
            ),
        ));
    }
    let mut dims = Vec::with_capacity(n_dims as usize);
    let mut n_elements: u64 = 1;
    for i in 0..n_dims {
        let at = r.pos();
        let d = r.u64("dimension")?;
        if d == 0 || d > i64::MAX as u64 {
            return Err(GgufError::new(
                ErrorKind::BadDimensions,
                at,
                format!("dimension {i} is {d}; it must be from 1 to 2^63-1"),
            ));
        }
        n_elements = n_elements
            .checked_mul(d)
            .filter(|&n| n <= i64::MAX as u64)
            .ok_or_else(|| {
                GgufError::new(
                    ErrorKind::Overflow,
                    at,
                    format!("the product of the dimensions overflows at dimension {i} ({d})"),
                )
            })?;
        dims.push(d);
    }
    let at = r.pos();
    let type_id = r.u32("tensor type")?;
    let ggml_type = GgmlType::from_id(type_id).ok_or_else(|| {
        let msg = match GgmlType::removed_name(type_id) {
            Some(old) => {
                format!("tensor type {type_id} ({old}) was removed from ggml and is not supported")
            }
            None => format!("unknown tensor type {type_id}"),
        };
        GgufError::new(ErrorKind::UnknownTensorType, at, msg)
    })?;
    let row = dims.first().copied().unwrap_or(1);
    if row % ggml_type.block_size != 0 {
        return Err(GgufError::new(
            ErrorKind::BadDimensions,
            at,
            format!(
                "row length {row} is not a multiple of {}'s block size {}",
                ggml_type.name, ggml_type.block_size
            ),
        ));
    }
    let n_bytes = (n_elements / ggml_type.block_size)
        .checked_mul(ggml_type.type_size)
        .ok_or_else(|| GgufError::new(ErrorKind::Overflow, at, "tensor size in bytes overflows"))?;
    let offset = r.u64("tensor data offset")?;
    Ok(TensorInfo {
        name,
        dims,
        ggml_type,
        offset,
        n_elements,
        n_bytes,
    })
}

fn align_up(x: u64, alignment: u64) -> Option<u64> {
    x.checked_add(alignment - 1)
        .map(|v| v / alignment * alignment)
}

/// Tensor data: aligned, in file order without overlap, inside the file.
fn check_layout(
    tensors: &[TensorInfo],
    alignment: u64,
    data_offset: u64,
    file_len: u64,
) -> Result<()> {
    let mut previous: Option<(&str, u64)> = None;
    for t in tensors {
        let place = || format!("tensor {:?}", t.name);
        if t.offset % alignment != 0 {
            return Err(GgufError::new(
                ErrorKind::Misaligned,
                data_offset,
                format!(
                    "data offset {} is not a multiple of the alignment {alignment}",
                    t.offset
                ),
            )
            .at(place));
        }
        if let Some((prev, prev_end)) = previous {
            if t.offset < prev_end {
                return Err(GgufError::new(
                    ErrorKind::Overlap,
                    data_offset,
                    format!(
                        "data offset {} lies before the end of the previous tensor {prev:?} ({prev_end}): tensors must be in order and not overlap",
                        t.offset
                    ),
                )
                .at(place));
            }
        }
        let end = data_offset
            .checked_add(t.offset)
            .and_then(|start| start.checked_add(t.n_bytes));
        if end.is_none_or(|end| end > file_len) {
            return Err(GgufError::new(
                ErrorKind::OutOfFile,
                data_offset,
                format!(
                    "data ({} bytes at data offset {}) lies past the end of the file ({file_len} bytes)",
                    t.n_bytes, t.offset
                ),
            )
            .at(place));
        }
        previous = Some((&t.name, t.offset.saturating_add(t.n_bytes)));
    }
    Ok(())
}
