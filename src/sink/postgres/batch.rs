//! A batch of consumed records with their keys and values copied into one buffer.
//!
//! Detaching each message (`BorrowedMessage::detach`) allocates its value, key and topic
//! separately: three allocations and three frees per record, of which the ~2 KB values are
//! the expensive kind for the allocator. A batch copies the bytes once into a buffer that is
//! allocated once, and keeps topic names once per topic.

use rdkafka::{
    Message, Timestamp,
    message::{BorrowedMessage, OwnedHeaders, OwnedMessage},
};

/// Where one record's parts are in its batch.
#[derive(Debug)]
struct Entry {
    topic: usize,
    partition: i32,
    offset: i64,
    timestamp: Timestamp,
    key: Option<(usize, usize)>,
    value: Option<(usize, usize)>,
    /// Only records that have headers pay for them (the dead-letter topic passes them on).
    headers: Option<OwnedHeaders>,
}

/// Records in the order they were consumed.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    bytes: Vec<u8>,
    topics: Vec<String>,
    entries: Vec<Entry>,
}

/// One record of a batch, borrowed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Record<'a> {
    batch: &'a Batch,
    entry: &'a Entry,
}

impl Batch {
    /// An empty batch with room for `records` records of about `bytes` bytes in all.
    pub(crate) fn with_capacity(records: usize, bytes: usize) -> Self {
        Self {
            bytes: Vec::with_capacity(bytes),
            topics: Vec::new(),
            entries: Vec::with_capacity(records),
        }
    }

    /// Empties the batch, keeping its buffers for the next one.
    pub(crate) fn clear(&mut self) {
        self.bytes.clear();
        self.topics.clear();
        self.entries.clear();
    }

    pub(crate) fn push(&mut self, message: &BorrowedMessage<'_>) {
        let name = message.topic();
        let topic = match self.topics.iter().rposition(|t| t == name) {
            Some(index) => index,
            None => {
                self.topics.push(name.to_owned());
                self.topics.len() - 1
            }
        };
        let mut copy = |part: Option<&[u8]>| {
            part.map(|bytes| {
                let start = self.bytes.len();
                self.bytes.extend_from_slice(bytes);
                (start, self.bytes.len())
            })
        };
        let key = copy(message.key());
        let value = copy(message.payload());
        self.entries.push(Entry {
            topic,
            partition: message.partition(),
            offset: message.offset(),
            timestamp: message.timestamp(),
            key,
            value,
            headers: message.headers().map(|h| h.detach()),
        });
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes of keys and values held.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes.len()
    }

    pub(crate) fn get(&self, index: usize) -> Option<Record<'_>> {
        self.entries
            .get(index)
            .map(|entry| Record { batch: self, entry })
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = Record<'_>> {
        self.entries
            .iter()
            .map(|entry| Record { batch: self, entry })
    }
}

impl<'a> Record<'a> {
    pub(crate) fn topic(&self) -> &'a str {
        self.batch
            .topics
            .get(self.entry.topic)
            .map_or("", String::as_str)
    }

    pub(crate) fn partition(&self) -> i32 {
        self.entry.partition
    }

    pub(crate) fn offset(&self) -> i64 {
        self.entry.offset
    }

    fn part(&self, range: Option<(usize, usize)>) -> Option<&'a [u8]> {
        range.and_then(|(start, end)| self.batch.bytes.get(start..end))
    }

    pub(crate) fn key(&self) -> Option<&'a [u8]> {
        self.part(self.entry.key)
    }

    pub(crate) fn payload(&self) -> Option<&'a [u8]> {
        self.part(self.entry.value)
    }

    /// The record as rdkafka's own type (for the dead-letter topic).
    pub(crate) fn to_message(self) -> OwnedMessage {
        OwnedMessage::new(
            self.payload().map(<[u8]>::to_vec),
            self.key().map(<[u8]>::to_vec),
            self.topic().to_owned(),
            self.entry.timestamp,
            self.entry.partition,
            self.entry.offset,
            self.entry.headers.clone(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_keep_their_parts() {
        // BorrowedMessage cannot be built without a broker: fill the batch as `push` does.
        let mut batch = Batch::with_capacity(2, 16);
        batch.topics.push("t".into());
        batch.bytes.extend_from_slice(b"k1v1v2");
        batch.entries.push(Entry {
            topic: 0,
            partition: 3,
            offset: 7,
            timestamp: Timestamp::NotAvailable,
            key: Some((0, 2)),
            value: Some((2, 4)),
            headers: None,
        });
        batch.entries.push(Entry {
            topic: 0,
            partition: 3,
            offset: 8,
            timestamp: Timestamp::NotAvailable,
            key: None,
            value: Some((4, 6)),
            headers: None,
        });
        let first = batch.get(0).expect("a record");
        assert_eq!(
            (first.topic(), first.partition(), first.offset()),
            ("t", 3, 7)
        );
        assert_eq!(first.key(), Some(&b"k1"[..]));
        assert_eq!(first.payload(), Some(&b"v1"[..]));
        let second = batch.get(1).expect("a record");
        assert_eq!(second.key(), None);
        assert_eq!(second.payload(), Some(&b"v2"[..]));
        let message = second.to_message();
        assert_eq!(message.payload(), Some(&b"v2"[..]));
        assert_eq!(message.offset(), 8);
        assert_eq!(batch.iter().count(), 2);
        assert!(batch.get(2).is_none());
        let capacity = batch.bytes.capacity();
        batch.clear();
        assert!(batch.is_empty() && batch.bytes() == 0);
        assert_eq!(batch.bytes.capacity(), capacity, "buffers are kept");
    }
}
