//! What is wrong with a GGUF file, and where: every rejection names a byte offset and,
//! when there is one, the key or tensor it was reading.

/// The kind of defect, for callers that branch on it (tests, the fuzzer's triage).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    Empty,
    BadMagic,
    BadVersion,
    /// The file ends before a field it announces.
    Truncated,
    /// A count above the parser's limits (tensors, keys, array elements).
    TooMany,
    /// A string above the parser's limits.
    TooLong,
    UnknownValueType,
    TooDeep,
    UnknownTensorType,
    BadDimensions,
    Overflow,
    Misaligned,
    Overlap,
    OutOfFile,
    Duplicate,
    BadValue,
    /// Reading the file failed (not a defect of its bytes).
    Io,
}

/// A rejected GGUF file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid GGUF at byte {offset}{}: {message}", place.as_ref().map(|p| format!(" ({p})")).unwrap_or_default())]
pub struct GgufError {
    /// What kind of defect.
    pub kind: ErrorKind,
    /// Byte offset of the field that is wrong.
    pub offset: u64,
    /// The key or tensor being read (`key "general.alignment"`, `tensor "output.weight"`).
    pub place: Option<String>,
    /// What is wrong, with the values found and the limits.
    pub message: String,
}

impl GgufError {
    pub fn new(kind: ErrorKind, offset: u64, message: impl Into<String>) -> Self {
        GgufError {
            kind,
            offset,
            place: None,
            message: message.into(),
        }
    }

    /// Name the key or tensor the error happened in, unless an inner one already did.
    pub fn at(mut self, place: impl FnOnce() -> String) -> Self {
        if self.place.is_none() {
            self.place = Some(place());
        }
        self
    }
}
