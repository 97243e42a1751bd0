//! The binary form of the stage's state: a log of entries (cell stored or removed, row image
//! stored or removed) that the store appends, one chunk per commit, and replays on start.
//!
//! Binary rather than JSON because every change touches a cell and a row image: building,
//! printing and parsing a JSON document for each was most of the stage's CPU. The format is
//! private to the stage and versioned by the first byte of each chunk.

/// The first byte of every chunk; a chunk of another version is refused on start.
pub const FORMAT_VERSION: u8 = 1;

/// Chunks end after the entry that takes them past this size, so that no stored value grows
/// without bound.
const CHUNK_BYTES: usize = 8 << 20;

/// Entry tags.
pub const CELL_STORED: u8 = 1;
pub const CELL_REMOVED: u8 = 2;
pub const ROW_STORED: u8 = 3;
pub const ROW_REMOVED: u8 = 4;

/// Entries written since the last commit, in chunks of about [`CHUNK_BYTES`].
#[derive(Debug, Default)]
pub struct StateLog {
    chunks: Vec<Vec<u8>>,
    entries: u64,
}

impl StateLog {
    /// Starts an entry with `tag`; the caller writes its fields next.
    pub fn entry(&mut self, tag: u8) -> StateWriter<'_> {
        if self
            .chunks
            .last()
            .is_none_or(|chunk| chunk.len() >= CHUNK_BYTES)
        {
            let mut chunk = Vec::with_capacity(64 << 10);
            chunk.push(FORMAT_VERSION);
            self.chunks.push(chunk);
        }
        self.entries += 1;
        let chunk = self.chunks.last_mut().expect("a chunk was just ensured");
        chunk.push(tag);
        StateWriter(chunk)
    }

    pub fn entries(&self) -> u64 {
        self.entries
    }

    pub fn chunks(&self) -> &[Vec<u8>] {
        &self.chunks
    }
}

/// Appends fields to a chunk.
#[derive(Debug)]
pub struct StateWriter<'a>(&'a mut Vec<u8>);

impl StateWriter<'_> {
    pub fn u8(&mut self, value: u8) -> &mut Self {
        self.0.push(value);
        self
    }

    pub fn i64(&mut self, value: i64) -> &mut Self {
        self.0.extend_from_slice(&value.to_le_bytes());
        self
    }

    pub fn u64(&mut self, value: u64) -> &mut Self {
        self.0.extend_from_slice(&value.to_le_bytes());
        self
    }

    pub fn i128(&mut self, value: i128) -> &mut Self {
        self.0.extend_from_slice(&value.to_le_bytes());
        self
    }

    /// A length or count, as LEB128.
    pub fn count(&mut self, mut value: usize) -> &mut Self {
        loop {
            let low = (value & 0x7f) as u8;
            value >>= 7;
            if value == 0 {
                self.0.push(low);
                return self;
            }
            self.0.push(low | 0x80);
        }
    }

    pub fn str(&mut self, value: &str) -> &mut Self {
        self.count(value.len());
        self.0.extend_from_slice(value.as_bytes());
        self
    }
}

/// Reads fields of a chunk; every read fails with a message rather than panicking on short or
/// damaged input.
#[derive(Debug)]
pub struct StateReader<'a> {
    bytes: &'a [u8],
}

pub type ReadResult<T> = Result<T, String>;

impl<'a> StateReader<'a> {
    /// A reader over `chunk`, after checking its version byte.
    pub fn new(chunk: &'a [u8]) -> ReadResult<Self> {
        match chunk.split_first() {
            Some((&FORMAT_VERSION, rest)) => Ok(Self { bytes: rest }),
            Some((version, _)) => Err(format!(
                "state format {version} is not this version's ({FORMAT_VERSION}); reset the \
                 connector's offsets to recompute its windows"
            )),
            None => Err("an empty state chunk".to_owned()),
        }
    }

    pub fn at_end(&self) -> bool {
        self.bytes.is_empty()
    }

    fn take(&mut self, n: usize) -> ReadResult<&'a [u8]> {
        if self.bytes.len() < n {
            return Err("a state chunk ends in the middle of an entry".to_owned());
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    pub fn u8(&mut self) -> ReadResult<u8> {
        Ok(self.take(1)?[0])
    }

    pub fn i64(&mut self) -> ReadResult<i64> {
        Ok(i64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    pub fn u64(&mut self) -> ReadResult<u64> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    pub fn i128(&mut self) -> ReadResult<i128> {
        Ok(i128::from_le_bytes(
            self.take(16)?.try_into().expect("16 bytes"),
        ))
    }

    pub fn count(&mut self) -> ReadResult<usize> {
        let mut value = 0usize;
        for shift in (0..64).step_by(7) {
            let byte = self.u8()?;
            value |= usize::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("a length in a state chunk is too long".to_owned())
    }

    pub fn str(&mut self) -> ReadResult<&'a str> {
        let n = self.count()?;
        std::str::from_utf8(self.take(n)?)
            .map_err(|_| "a text in a state chunk is not UTF-8".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_read_back_as_written() {
        let mut log = StateLog::default();
        log.entry(CELL_STORED)
            .i64(-5)
            .u64(u64::MAX)
            .i128(i128::MIN)
            .count(300)
            .str("grüße")
            .u8(7);
        assert_eq!(log.entries(), 1);
        let mut reader = StateReader::new(&log.chunks()[0]).expect("version");
        assert_eq!(reader.u8(), Ok(CELL_STORED));
        assert_eq!(reader.i64(), Ok(-5));
        assert_eq!(reader.u64(), Ok(u64::MAX));
        assert_eq!(reader.i128(), Ok(i128::MIN));
        assert_eq!(reader.count(), Ok(300));
        assert_eq!(reader.str(), Ok("grüße"));
        assert_eq!(reader.u8(), Ok(7));
        assert!(reader.at_end());
    }

    #[test]
    fn short_and_foreign_chunks_are_errors_not_panics() {
        assert!(StateReader::new(&[]).is_err());
        let foreign = StateReader::new(&[FORMAT_VERSION + 1, 1]).expect_err("refused");
        assert!(
            foreign.contains("reset the connector's offsets"),
            "{foreign}"
        );
        let mut reader = StateReader::new(&[FORMAT_VERSION, 1, 2]).expect("version");
        assert!(reader.i64().is_err());
        let mut reader = StateReader::new(&[FORMAT_VERSION, 5, b'a']).expect("version");
        assert!(reader.str().is_err());
    }

    #[test]
    fn large_logs_are_split_into_chunks_at_entry_boundaries() {
        let mut log = StateLog::default();
        let text = "x".repeat(1 << 20);
        for _ in 0..20 {
            log.entry(ROW_STORED).str(&text);
        }
        assert!(log.chunks().len() >= 2);
        let mut read = 0;
        for chunk in log.chunks() {
            let mut reader = StateReader::new(chunk).expect("version");
            while !reader.at_end() {
                assert_eq!(reader.u8(), Ok(ROW_STORED));
                assert_eq!(reader.str().map(str::len), Ok(1 << 20));
                read += 1;
            }
        }
        assert_eq!(read, 20);
    }
}
