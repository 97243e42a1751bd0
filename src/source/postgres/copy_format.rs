//! The two forms `COPY … TO STDOUT` writes rows in, split into fields: text (a line of
//! tab-separated, backslash-escaped fields per row) and binary (length-prefixed fields, each in
//! its type's send format).

use std::ops::Range;

/// COPY data, text or binary, that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CopyFormatError {
    #[error("a line ends with a lone backslash")]
    TrailingBackslash,
    #[error("\\N (NULL) appears inside a field")]
    NullInsideField,
    #[error("the data does not start with PostgreSQL's binary COPY signature")]
    BinarySignature,
    #[error("binary COPY header flags {0:#010x} are not understood")]
    BinaryFlags(u32),
    #[error("a binary COPY tuple announces {0} fields")]
    FieldCount(i16),
    #[error("a binary COPY field announces {0} bytes")]
    FieldLength(i32),
    #[error("data follows the end of the binary COPY data")]
    DataAfterEnd,
}

/// Splits one line of COPY's text format (without its newline) into fields: each field is a
/// range of the returned bytes, or None for `\N` (NULL). A line without backslashes (nearly
/// every one) is its own fields' bytes; otherwise the fields are unescaped into `out`.
///
/// Escapes as PostgreSQL's COPY writes and reads them: `\\`, `\b`, `\f`, `\n`, `\r`, `\t`,
/// `\v`, `\` + 1-3 octal digits, `\x` + 1-2 hex digits; any other escaped character stands
/// for itself.
pub fn split_copy_line<'a>(
    line: &'a [u8],
    out: &'a mut Vec<u8>,
    fields: &mut Vec<Option<Range<usize>>>,
) -> Result<&'a [u8], CopyFormatError> {
    fields.clear();
    if memchr::memchr(b'\\', line).is_none() {
        let mut start = 0;
        for tab in memchr::memchr_iter(b'\t', line) {
            fields.push(Some(start..tab));
            start = tab + 1;
        }
        fields.push(Some(start..line.len()));
        return Ok(line);
    }
    unescape_copy_line(line, out, fields)?;
    Ok(out)
}

/// [`split_copy_line`] for a line with escapes.
fn unescape_copy_line(
    line: &[u8],
    out: &mut Vec<u8>,
    fields: &mut Vec<Option<Range<usize>>>,
) -> Result<(), CopyFormatError> {
    out.clear();
    fields.clear();
    let mut start = 0;
    let mut null = false;
    let mut i = 0;
    while i < line.len() {
        // Copy the plain run up to the next tab or backslash in one go.
        let run = memchr::memchr2(b'\t', b'\\', &line[i..]).map_or(line.len(), |p| i + p);
        if null && run > i {
            return Err(CopyFormatError::NullInsideField);
        }
        out.extend_from_slice(&line[i..run]);
        i = run;
        if i == line.len() {
            break;
        }
        if line[i] == b'\t' {
            fields.push((!null).then_some(start..out.len()));
            start = out.len();
            null = false;
            i += 1;
            continue;
        }
        // A backslash.
        let Some(&escaped) = line.get(i + 1) else {
            return Err(CopyFormatError::TrailingBackslash);
        };
        i += 2;
        if null {
            return Err(CopyFormatError::NullInsideField);
        }
        match escaped {
            b'N' => {
                if out.len() != start {
                    return Err(CopyFormatError::NullInsideField);
                }
                null = true;
            }
            b'b' => out.push(0x08),
            b'f' => out.push(0x0c),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(0x0b),
            b'0'..=b'7' => {
                let mut value = u32::from(escaped - b'0');
                for _ in 0..2 {
                    match line.get(i) {
                        Some(&d @ b'0'..=b'7') => {
                            value = value * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                // As PostgreSQL: an octal escape above \377 keeps its low byte.
                out.push((value & 0xff) as u8);
            }
            b'x' if line.get(i).is_some_and(u8::is_ascii_hexdigit) => {
                let mut value = 0u32;
                for _ in 0..2 {
                    match line.get(i).and_then(|d| (*d as char).to_digit(16)) {
                        Some(digit) => {
                            value = value * 16 + digit;
                            i += 1;
                        }
                        None => break,
                    }
                }
                out.push(value as u8);
            }
            other => out.push(other),
        }
    }
    fields.push((!null).then_some(start..out.len()));
    Ok(())
}

/// The first bytes of binary COPY data.
const BINARY_SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";
/// Signature, flags and the header extension's length.
const BINARY_HEADER_LEN: usize = 19;
/// Header flags a reader must understand: bits 0-15 (format changes) and 16 (an OID in every
/// tuple, never asked for here). Bits 17-31 may be ignored.
const UNREAD_FLAGS: u32 = 0x0001_ffff;

/// Reads COPY's binary format as it arrives, in pieces of any size: a header, then tuples (a
/// 16-bit field count, then per field a 32-bit length, -1 for NULL, and that many bytes), then a
/// field count of -1.
#[derive(Debug, Default)]
pub struct BinaryCopyReader {
    header_read: bool,
    ended: bool,
}

/// What [`BinaryCopyReader::next`] found at the start of its input.
#[derive(Debug, PartialEq, Eq)]
pub enum BinaryStep {
    /// A tuple in the first `n` bytes; its fields are ranges of the input.
    Tuple(usize),
    /// The first `n` bytes are the header: no tuple.
    Header(usize),
    /// The end marker, in the first `n` bytes.
    End(usize),
    /// The input stops inside the header or a tuple: call again with more.
    NeedMore,
}

impl BinaryCopyReader {
    /// Whether the end marker has been read.
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// Reads the header, a tuple or the end marker at the start of `input`; a tuple's fields
    /// are put in `fields` (None for NULL).
    pub fn next(
        &mut self,
        input: &[u8],
        fields: &mut Vec<Option<Range<usize>>>,
    ) -> Result<BinaryStep, CopyFormatError> {
        if self.ended {
            return Err(CopyFormatError::DataAfterEnd);
        }
        if !self.header_read {
            let Some(header) = input.get(..BINARY_HEADER_LEN) else {
                return Ok(BinaryStep::NeedMore);
            };
            if &header[..11] != BINARY_SIGNATURE {
                return Err(CopyFormatError::BinarySignature);
            }
            let flags = u32::from_be_bytes(word(&header[11..15]));
            if flags & UNREAD_FLAGS != 0 {
                return Err(CopyFormatError::BinaryFlags(flags));
            }
            let extension = u32::from_be_bytes(word(&header[15..19])) as usize;
            let length = BINARY_HEADER_LEN.saturating_add(extension);
            if input.len() < length {
                return Ok(BinaryStep::NeedMore);
            }
            self.header_read = true;
            return Ok(BinaryStep::Header(length));
        }
        let Some(count) = input.get(..2) else {
            return Ok(BinaryStep::NeedMore);
        };
        let count = i16::from_be_bytes([count[0], count[1]]);
        if count == -1 {
            self.ended = true;
            return Ok(BinaryStep::End(2));
        }
        if count < 0 {
            return Err(CopyFormatError::FieldCount(count));
        }
        fields.clear();
        let mut at = 2;
        for _ in 0..count {
            let Some(length) = input.get(at..at + 4) else {
                return Ok(BinaryStep::NeedMore);
            };
            let length = i32::from_be_bytes(word(length));
            at += 4;
            if length == -1 {
                fields.push(None);
                continue;
            }
            let Ok(length) = usize::try_from(length) else {
                return Err(CopyFormatError::FieldLength(length));
            };
            if input.len() < at + length {
                return Ok(BinaryStep::NeedMore);
            }
            fields.push(Some(at..at + length));
            at += length;
        }
        Ok(BinaryStep::Tuple(at))
    }
}

fn word(bytes: &[u8]) -> [u8; 4] {
    [bytes[0], bytes[1], bytes[2], bytes[3]]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(line: &[u8]) -> Result<Vec<Option<Vec<u8>>>, CopyFormatError> {
        let (mut out, mut fields) = (Vec::new(), Vec::new());
        let bytes = split_copy_line(line, &mut out, &mut fields)?;
        Ok(fields
            .into_iter()
            .map(|field| field.map(|range| bytes[range].to_vec()))
            .collect())
    }

    fn text(value: &str) -> Option<Vec<u8>> {
        Some(value.as_bytes().to_vec())
    }

    #[test]
    fn copy_fields_nulls_and_empty_strings() {
        assert_eq!(
            split(b"1\tAnn\t\\N\t").expect("valid"),
            [text("1"), text("Ann"), None, text("")]
        );
        assert_eq!(split(b"").expect("valid"), [text("")]);
        // Without a backslash the fields are slices of the line itself.
        assert_eq!(
            split(b"\t1\t\tAnn Lee\t").expect("valid"),
            [text(""), text("1"), text(""), text("Ann Lee"), text("")]
        );
        let (mut out, mut fields) = (Vec::new(), Vec::new());
        let line = b"7\tplain";
        let bytes = split_copy_line(line, &mut out, &mut fields).expect("valid");
        assert_eq!(bytes.as_ptr(), line.as_ptr());
        assert_eq!(fields, [Some(0..1), Some(2..7)]);
        assert_eq!(split(b"\\N").expect("valid"), [None]);
        assert_eq!(split(b"\\N\t\\N").expect("valid"), [None, None]);
    }

    #[test]
    fn copy_escapes() {
        assert_eq!(
            split(b"a\\\\b\\tc\\nd\\re\\bf\\fg\\vh").expect("valid"),
            [Some(b"a\\b\tc\nd\re\x08f\x0cg\x0bh".to_vec())]
        );
        // Octal: one to three digits; hex: one or two; \x without a digit is x.
        assert_eq!(
            split(b"\\101\\7\\0018\\x41\\x4\\xg\\q").expect("valid"),
            [Some(b"A\x07\x018A\x04xgq".to_vec())]
        );
        // An escaped tab does not split; "\N" spelled as data arrives as \\N.
        assert_eq!(
            split(b"x\\ty\t\\\\N").expect("valid"),
            [text("x\ty"), text("\\N")]
        );
        // Multi-byte UTF-8 passes through untouched.
        assert_eq!(
            split("żółw\t€".as_bytes()).expect("valid"),
            [text("żółw"), text("€")]
        );
    }

    #[test]
    fn malformed_copy_lines_are_errors() {
        assert_eq!(split(b"abc\\"), Err(CopyFormatError::TrailingBackslash));
        assert_eq!(split(b"a\\N"), Err(CopyFormatError::NullInsideField));
        assert_eq!(split(b"\\Nb\t1"), Err(CopyFormatError::NullInsideField));
        assert_eq!(split(b"\\N\\t"), Err(CopyFormatError::NullInsideField));
    }

    /// Binary COPY data of `rows`, each field None for NULL.
    fn binary_copy(rows: &[Vec<Option<&[u8]>>]) -> Vec<u8> {
        let mut out = BINARY_SIGNATURE.to_vec();
        out.extend_from_slice(&0u32.to_be_bytes());
        out.extend_from_slice(&3u32.to_be_bytes());
        out.extend_from_slice(b"ext");
        for row in rows {
            out.extend_from_slice(&(row.len() as i16).to_be_bytes());
            for field in row {
                match field {
                    None => out.extend_from_slice(&(-1i32).to_be_bytes()),
                    Some(bytes) => {
                        out.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
                        out.extend_from_slice(bytes);
                    }
                }
            }
        }
        out.extend_from_slice(&(-1i16).to_be_bytes());
        out
    }

    /// Feeds `data` in pieces of `piece` bytes, as a COPY stream would, keeping the unread rest.
    fn read_binary(
        data: &[u8],
        piece: usize,
    ) -> Result<Vec<Vec<Option<Vec<u8>>>>, CopyFormatError> {
        let mut reader = BinaryCopyReader::default();
        let (mut carry, mut fields, mut rows) = (Vec::new(), Vec::new(), Vec::new());
        for chunk in data.chunks(piece) {
            carry.extend_from_slice(chunk);
            let mut at = 0;
            loop {
                match reader.next(&carry[at..], &mut fields)? {
                    BinaryStep::Tuple(n) => {
                        let tuple = &carry[at..at + n];
                        rows.push(
                            fields
                                .iter()
                                .map(|f| f.clone().map(|r| tuple[r].to_vec()))
                                .collect(),
                        );
                        at += n;
                    }
                    BinaryStep::Header(n) => at += n,
                    BinaryStep::End(n) => {
                        at += n;
                        break;
                    }
                    BinaryStep::NeedMore => break,
                }
            }
            carry.drain(..at);
        }
        assert!(reader.ended(), "no end marker");
        assert!(carry.is_empty(), "bytes left over");
        Ok(rows)
    }

    #[test]
    fn binary_tuples_in_pieces_of_any_size() {
        let rows = vec![
            vec![Some(&b"\x00\x00\x00\x07"[..]), None, Some(&b""[..])],
            vec![
                Some(&b"a longer field with \t and \n"[..]),
                Some(&b"x"[..]),
                None,
            ],
            vec![],
        ];
        let data = binary_copy(&rows);
        let expected: Vec<Vec<Option<Vec<u8>>>> = rows
            .iter()
            .map(|row| row.iter().map(|f| f.map(<[u8]>::to_vec)).collect())
            .collect();
        for piece in [1, 2, 3, 7, 19, 20, data.len()] {
            assert_eq!(
                read_binary(&data, piece).expect("valid"),
                expected,
                "pieces of {piece}"
            );
        }
    }

    #[test]
    fn malformed_binary_copy_is_an_error() {
        let mut fields = Vec::new();
        let mut bad_signature = binary_copy(&[]);
        bad_signature[0] = b'X';
        assert_eq!(
            BinaryCopyReader::default().next(&bad_signature, &mut fields),
            Err(CopyFormatError::BinarySignature)
        );
        let mut with_oids = binary_copy(&[]);
        with_oids[11..15].copy_from_slice(&(1u32 << 16).to_be_bytes());
        assert_eq!(
            BinaryCopyReader::default().next(&with_oids, &mut fields),
            Err(CopyFormatError::BinaryFlags(1 << 16))
        );
        let mut negative = binary_copy(&[vec![Some(&b"ab"[..])]]);
        let length_at = BINARY_HEADER_LEN + 3 + 2;
        negative[length_at..length_at + 4].copy_from_slice(&(-2i32).to_be_bytes());
        assert_eq!(
            read_binary(&negative, negative.len()),
            Err(CopyFormatError::FieldLength(-2))
        );
        let mut after_end = binary_copy(&[]);
        after_end.extend_from_slice(b"\x00\x01");
        let mut reader = BinaryCopyReader::default();
        let header = BINARY_HEADER_LEN + 3;
        assert_eq!(
            reader.next(&after_end, &mut fields),
            Ok(BinaryStep::Header(header))
        );
        assert_eq!(
            reader.next(&after_end[header..], &mut fields),
            Ok(BinaryStep::End(2))
        );
        assert_eq!(
            reader.next(&after_end[header + 2..], &mut fields),
            Err(CopyFormatError::DataAfterEnd)
        );
    }
}
