//! A bounded little-endian reader: every read is checked against the file's length
//! before a byte is read or a buffer allocated, so hostile lengths fail cleanly.

use std::io::Read;

use super::error::{ErrorKind, GgufError};

pub struct Reader<R> {
    /// The bytes, read front to back once.
    inner: R,
    /// Offset of the next byte to read.
    pos: u64,
    /// Length of the whole file: no field may reach past it.
    len: u64,
}

type Result<T> = std::result::Result<T, GgufError>;

impl<R: Read> Reader<R> {
    pub fn new(inner: R, len: u64) -> Self {
        Reader { inner, pos: 0, len }
    }

    pub fn pos(&self) -> u64 {
        self.pos
    }

    pub fn remaining(&self) -> u64 {
        self.len.saturating_sub(self.pos)
    }

    /// Fail unless `n` more bytes exist, naming what they were for.
    pub fn need(&self, n: u64, what: &str) -> Result<()> {
        if n > self.remaining() {
            return Err(GgufError::new(
                ErrorKind::Truncated,
                self.pos,
                format!(
                    "{what} needs {n} bytes but the file ends after {} more (file is {} bytes)",
                    self.remaining(),
                    self.len
                ),
            ));
        }
        Ok(())
    }

    fn fill(&mut self, buf: &mut [u8], what: &str) -> Result<()> {
        self.need(buf.len() as u64, what)?;
        self.inner.read_exact(buf).map_err(|e| {
            let kind = if e.kind() == std::io::ErrorKind::UnexpectedEof {
                ErrorKind::Truncated
            } else {
                ErrorKind::Io
            };
            GgufError::new(kind, self.pos, format!("cannot read {what}: {e}"))
        })?;
        self.pos += buf.len() as u64;
        Ok(())
    }

    pub fn bytes<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let mut buf = [0u8; N];
        self.fill(&mut buf, what)?;
        Ok(buf)
    }

    pub fn u8(&mut self, what: &str) -> Result<u8> {
        Ok(self.bytes::<1>(what)?[0])
    }

    pub fn u16(&mut self, what: &str) -> Result<u16> {
        Ok(u16::from_le_bytes(self.bytes(what)?))
    }

    pub fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.bytes(what)?))
    }

    pub fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.bytes(what)?))
    }

    /// A length-prefixed string of at most `limit` bytes, checked before allocating.
    pub fn string(&mut self, limit: u64, what: &str) -> Result<String> {
        let at = self.pos;
        let len = self.string_len(limit, what)?;
        // Bounded by `limit` and by the bytes left in the file, both checked above.
        let mut buf = vec![0u8; len as usize];
        self.fill(&mut buf, what)?;
        String::from_utf8(buf).map_err(|e| {
            GgufError::new(
                ErrorKind::BadValue,
                at,
                format!("{what} is not valid UTF-8 ({e})"),
            )
        })
    }

    /// Skip a length-prefixed string, checking its length the same way.
    pub fn skip_string(&mut self, limit: u64, what: &str) -> Result<()> {
        let len = self.string_len(limit, what)?;
        self.skip(len, what)
    }

    fn string_len(&mut self, limit: u64, what: &str) -> Result<u64> {
        let at = self.pos;
        let len = self.u64(&format!("length of {what}"))?;
        if len > limit {
            return Err(GgufError::new(
                ErrorKind::TooLong,
                at,
                format!("{what} is {len} bytes long; the limit is {limit}"),
            ));
        }
        if len > self.remaining() {
            return Err(GgufError::new(
                ErrorKind::Truncated,
                at,
                format!(
                    "{what} is {len} bytes long but only {} bytes remain in the file",
                    self.remaining()
                ),
            ));
        }
        Ok(len)
    }

    pub fn skip(&mut self, n: u64, what: &str) -> Result<()> {
        self.need(n, what)?;
        let copied =
            std::io::copy(&mut (&mut self.inner).take(n), &mut std::io::sink()).map_err(|e| {
                GgufError::new(ErrorKind::Io, self.pos, format!("cannot read {what}: {e}"))
            })?;
        if copied != n {
            return Err(GgufError::new(
                ErrorKind::Truncated,
                self.pos,
                format!("{what}: the file ended early"),
            ));
        }
        self.pos += n;
        Ok(())
    }
}
