//! The lib0 primitives Yjs messages are built from: LEB128 variable-length unsigned integers,
//! length-prefixed byte arrays and UTF-8 strings.
//!
//! Decoding never trusts a length: every read is checked against the bytes that remain, so a
//! hostile frame can make a read fail but never allocate more than the frame itself.

use thiserror::Error;

/// Why bytes could not be decoded.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The input ended in the middle of a value.
    #[error("unexpected end of message")]
    UnexpectedEnd,
    /// A variable-length integer is longer than 64 bits.
    #[error("integer overflow")]
    Overflow,
    /// A string is not valid UTF-8.
    #[error("invalid utf-8 string")]
    InvalidUtf8,
    /// A value is outside the range the protocol allows.
    #[error("{0}")]
    Invalid(&'static str),
}

/// A cursor over a byte slice reading lib0 values.
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Starts reading at the beginning of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    /// Whether any bytes remain.
    pub fn has_content(&self) -> bool {
        !self.buf.is_empty()
    }

    /// Number of bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// Reads a variable-length unsigned integer of at most 64 bits.
    pub fn var_u64(&mut self) -> Result<u64, DecodeError> {
        let mut value: u64 = 0;
        let mut shift = 0u32;
        loop {
            let (&byte, rest) = self.buf.split_first().ok_or(DecodeError::UnexpectedEnd)?;
            self.buf = rest;
            let bits = u64::from(byte & 0x7f);
            if shift == 63 && bits > 1 || shift > 63 {
                return Err(DecodeError::Overflow);
            }
            value |= bits << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
            shift += 7;
        }
    }

    /// Reads a length-prefixed byte array, borrowing it from the input.
    pub fn var_bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let len = self.var_u64()?;
        let len = usize::try_from(len).map_err(|_| DecodeError::UnexpectedEnd)?;
        if len > self.buf.len() {
            return Err(DecodeError::UnexpectedEnd);
        }
        let (bytes, rest) = self.buf.split_at(len);
        self.buf = rest;
        Ok(bytes)
    }

    /// Reads exactly `len` bytes, borrowing them from the input.
    pub fn bytes(&mut self, len: usize) -> Result<&'a [u8], DecodeError> {
        if len > self.buf.len() {
            return Err(DecodeError::UnexpectedEnd);
        }
        let (bytes, rest) = self.buf.split_at(len);
        self.buf = rest;
        Ok(bytes)
    }

    /// Reads a length-prefixed UTF-8 string (the length counts bytes).
    pub fn var_str(&mut self) -> Result<&'a str, DecodeError> {
        std::str::from_utf8(self.var_bytes()?).map_err(|_| DecodeError::InvalidUtf8)
    }
}

/// Appends a variable-length unsigned integer.
pub fn write_var_u64(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Appends a length-prefixed byte array.
pub fn write_var_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    write_var_u64(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(value: u64) -> Vec<u8> {
        let mut out = Vec::new();
        write_var_u64(&mut out, value);
        out
    }

    #[test]
    fn var_uint_matches_lib0() {
        assert_eq!(encoded(0), [0x00]);
        assert_eq!(encoded(127), [0x7f]);
        assert_eq!(encoded(128), [0x80, 0x01]);
        assert_eq!(encoded(300), [0xac, 0x02]);
        assert_eq!(encoded(1_234_567), [0x87, 0xad, 0x4b]);
        assert_eq!(
            encoded((1 << 53) - 1),
            [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0f]
        );
    }

    #[test]
    fn var_uint_round_trips() {
        for value in [0, 1, 127, 128, 16_383, 16_384, u32::MAX as u64, u64::MAX] {
            assert_eq!(Reader::new(&encoded(value)).var_u64(), Ok(value));
        }
    }

    #[test]
    fn overlong_integer_is_refused() {
        let bytes = [0xff; 11];
        assert_eq!(Reader::new(&bytes).var_u64(), Err(DecodeError::Overflow));
        let mut too_big = vec![0xff; 9];
        too_big.push(0x02);
        assert_eq!(Reader::new(&too_big).var_u64(), Err(DecodeError::Overflow));
    }

    #[test]
    fn lengths_are_checked_against_the_input() {
        let mut reader = Reader::new(&[0x05, b'a', b'b']);
        assert_eq!(reader.var_bytes(), Err(DecodeError::UnexpectedEnd));
        let huge = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f];
        assert_eq!(
            Reader::new(&huge).var_bytes(),
            Err(DecodeError::UnexpectedEnd)
        );
    }

    #[test]
    fn strings_must_be_utf8() {
        assert_eq!(
            Reader::new(&[0x06, 0xc3, 0xa9, 0xf0, 0x9f, 0x98, 0x80]).var_str(),
            Ok("é😀")
        );
        assert_eq!(
            Reader::new(&[0x01, 0xff]).var_str(),
            Err(DecodeError::InvalidUtf8)
        );
    }
}
