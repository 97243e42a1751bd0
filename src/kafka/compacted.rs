//! Compacted topics that hold a worker's state (source offsets, connector configs, statuses,
//! registered schemas):
//! creating them compacted, and reading one back from its beginning to its end.
//!
//! A read is `read_committed`, so it ends at the last stable offset: records of aborted or
//! still-open transactions never show. The whole read, metadata included, is bounded by a
//! timeout; not reaching the end in time is an error rather than a possibly stale answer.
//! librdkafka's consumer calls block, so the blocking [`replay`] runs on a blocking thread when
//! called from async code ([`read_latest`] does so).

use std::{
    collections::{BTreeMap, HashMap},
    time::{Duration, Instant},
};

use rdkafka::{
    ClientConfig, Message, Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer},
    error::KafkaError,
    message::BorrowedMessage,
    types::RDKafkaErrorCode,
};

use super::{ClientSettings, Error, TopicAdmin, TopicSpec};

/// What a state topic holds; names it in errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StateRole {
    Offsets,
    Configs,
    Status,
    /// The schema registry's `_schemas` topic.
    Schemas,
}

impl std::fmt::Display for StateRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StateRole::Offsets => "offsets",
            StateRole::Configs => "configs",
            StateRole::Status => "status",
            StateRole::Schemas => "schemas",
        })
    }
}

/// How long topic creation and config checks may take.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a topic may stay unknown to the metadata before it counts as missing.
const MISSING_GRACE: Duration = Duration::from_secs(5);

/// Longest single wait for a record, so deadlines and end-of-partition checks stay responsive.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// How long a just-created topic may describe itself without configs before its policy counts.
const CONFIG_GRACE: Duration = Duration::from_secs(5);

/// Creates `topic` compacted with `partitions` partitions when missing (an existing topic keeps
/// its own partitions). An existing topic must be compacted only: with `delete` in its cleanup
/// policy, state would vanish after the retention time.
///
pub async fn ensure_compacted_topic(
    settings: &ClientSettings,
    role: StateRole,
    topic: &str,
    partitions: i32,
) -> Result<(), Error> {
    let admin = TopicAdmin::new(settings, ADMIN_TIMEOUT)?;
    let mut spec = TopicSpec::compacted(topic);
    spec.partitions = partitions;
    admin.ensure_topic(&spec).await?;
    // Right after creation, and often on a new admin client's first request even for an old
    // topic, the broker describes the topic with no configs: an empty answer means "ask again"
    // (soon, then less often: a source waits for this at every start), only a different policy
    // is an error.
    let started = Instant::now();
    let mut pause = Duration::from_millis(5);
    let policy = loop {
        let policy = admin
            .topic_config(topic, "cleanup.policy")
            .await?
            .unwrap_or_default();
        if !policy.trim().is_empty() || started.elapsed() >= CONFIG_GRACE {
            break policy;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(POLL_INTERVAL);
    };
    if policy.trim() != "compact" {
        return Err(Error::StateTopicNotCompacted {
            role,
            topic: topic.to_owned(),
            policy,
        });
    }
    Ok(())
}

/// The newest record of one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LatestRecord {
    pub partition: i32,
    pub offset: i64,
    /// Milliseconds since the Unix epoch; `i64::MIN` when the record has none.
    pub timestamp: i64,
    /// `None` for a tombstone.
    pub value: Option<Vec<u8>>,
}

/// Reads `topic` to its end and returns the newest record of every key, tombstones included (as
/// `value: None`, so callers can tell "deleted" from "never written"). Records without a key are
/// skipped. Only the newest record per key is kept, so memory follows the number of keys, not
/// the length of a not-yet-compacted log.
pub async fn read_latest(
    settings: &ClientSettings,
    role: StateRole,
    topic: &str,
    timeout: Duration,
) -> Result<BTreeMap<Vec<u8>, LatestRecord>, Error> {
    let settings = settings.clone();
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut latest = BTreeMap::new();
        replay(&settings, role, &topic, timeout, |message| {
            if let Some(key) = message.key() {
                keep_newest(&mut latest, key, LatestRecord::of(message));
            }
        })?;
        Ok(latest)
    })
    .await
    .expect("replaying a compacted topic does not panic")
}

impl LatestRecord {
    fn of(message: &BorrowedMessage<'_>) -> Self {
        Self {
            partition: message.partition(),
            offset: message.offset(),
            timestamp: message.timestamp().to_millis().unwrap_or(i64::MIN),
            value: message.payload().map(<[u8]>::to_vec),
        }
    }
}

/// Within a partition a later record wins. A key normally lives in one partition; should a change
/// of partitioner have spread it, the record written last wins (the higher partition on a tie).
fn keep_newest(latest: &mut BTreeMap<Vec<u8>, LatestRecord>, key: &[u8], record: LatestRecord) {
    match latest.get_mut(key) {
        Some(current) => {
            let newer = if current.partition == record.partition {
                record.offset > current.offset
            } else {
                (record.timestamp, record.partition) > (current.timestamp, current.partition)
            };
            if newer {
                *current = record;
            }
        }
        None => {
            latest.insert(key.to_vec(), record);
        }
    }
}

/// Blocking: hands every committed record of `topic`, partition by partition in log order, to
/// `visit`, from the beginning up to at least the end (last stable offset) as it was when the read
/// started; a record appended meanwhile may be handed over too, being newer all the same.
pub fn replay(
    settings: &ClientSettings,
    role: StateRole,
    topic: &str,
    timeout: Duration,
    mut visit: impl FnMut(&BorrowedMessage<'_>),
) -> Result<(), Error> {
    let deadline = Instant::now() + timeout;
    let read_error = |source| Error::ReadStateTopic {
        role,
        topic: topic.to_owned(),
        source,
    };
    let consumer = state_consumer(settings)?;
    let partitions = partitions_of(&consumer, role, topic, deadline, timeout)?;

    // With read_committed the high watermark is the last stable offset: the end of what can be
    // read, before any open transaction.
    let mut ends = HashMap::new();
    let mut assignment = TopicPartitionList::new();
    for partition in partitions {
        let left = deadline.saturating_duration_since(Instant::now());
        let (low, high) = consumer
            .fetch_watermarks(topic, partition, left)
            .map_err(read_error)?;
        if high > low {
            ends.insert(partition, high);
            assignment
                .add_partition_offset(topic, partition, Offset::Beginning)
                .map_err(read_error)?;
        }
    }
    if ends.is_empty() {
        return Ok(());
    }
    consumer.assign(&assignment).map_err(read_error)?;

    while !ends.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            let mut partitions: Vec<i32> = ends.into_keys().collect();
            partitions.sort_unstable();
            return Err(Error::ReadStateTopicTimedOut {
                role,
                topic: topic.to_owned(),
                partitions,
                timeout,
            });
        }
        match consumer.poll(left.min(POLL_INTERVAL)) {
            Some(Ok(message)) => {
                let partition = message.partition();
                visit(&message);
                if ends
                    .get(&partition)
                    .is_some_and(|&end| message.offset() + 1 >= end)
                {
                    ends.remove(&partition);
                }
            }
            // Reached the last stable offset; with an open transaction the commit marker that
            // would move the position up to it may not exist yet.
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                ends.remove(&partition);
            }
            Some(Err(err)) => return Err(read_error(err)),
            None => {
                // The last records may be transaction markers, which are never delivered.
                let positions = consumer.position().map_err(read_error)?;
                for element in positions.elements_for_topic(topic) {
                    if let Offset::Offset(position) = element.offset()
                        && ends
                            .get(&element.partition())
                            .is_some_and(|&end| position >= end)
                    {
                        ends.remove(&element.partition());
                    }
                }
            }
        }
    }
    Ok(())
}

fn state_consumer(settings: &ClientSettings) -> Result<BaseConsumer, Error> {
    let mut config: ClientConfig = settings.base();
    // Partitions are assigned by hand and nothing is committed, so the group never has members
    // or offsets; librdkafka wants one for `position` all the same.
    config
        .set("group.id", "tributary-state-reader")
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest");
    settings
        .finish(config)
        .create()
        .map_err(|source| Error::CreateClient {
            client: "state topic consumer",
            bootstrap_servers: settings.bootstrap_servers.clone(),
            source,
        })
}

/// The topic's partitions; waits (until `deadline`) while a just-created topic has no leader yet.
fn partitions_of(
    consumer: &BaseConsumer,
    role: StateRole,
    topic: &str,
    deadline: Instant,
    timeout: Duration,
) -> Result<Vec<i32>, Error> {
    let started = Instant::now();
    let missing = || Error::StateTopicMissing {
        role,
        topic: topic.to_owned(),
    };
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let metadata = consumer
            .fetch_metadata(Some(topic), left)
            .map_err(|source| Error::ReadStateTopic {
                role,
                topic: topic.to_owned(),
                source,
            })?;
        let found = metadata.topics().iter().find(|t| t.name() == topic);
        let out_of_time = Instant::now() + POLL_INTERVAL >= deadline;
        match found.map(|t| (t.error(), t.partitions())) {
            Some((None, partitions))
                if !partitions.is_empty() && partitions.iter().all(|p| p.error().is_none()) =>
            {
                return Ok(partitions.iter().map(|p| p.id()).collect());
            }
            // A topic created a moment ago may not be in every broker's metadata yet: it counts
            // as missing only once it stays unknown for a while.
            Some((Some(code), _))
                if RDKafkaErrorCode::from(code) == RDKafkaErrorCode::UnknownTopicOrPartition =>
            {
                if started.elapsed() >= MISSING_GRACE || out_of_time {
                    return Err(missing());
                }
            }
            None => {
                if started.elapsed() >= MISSING_GRACE || out_of_time {
                    return Err(missing());
                }
            }
            Some(_) if !out_of_time => {}
            Some(_) => {
                return Err(Error::ReadStateTopicTimedOut {
                    role,
                    topic: topic.to_owned(),
                    partitions: Vec::new(),
                    timeout,
                });
            }
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(partition: i32, offset: i64, timestamp: i64, value: Option<&str>) -> LatestRecord {
        LatestRecord {
            partition,
            offset,
            timestamp,
            value: value.map(|v| v.as_bytes().to_vec()),
        }
    }

    #[test]
    fn later_record_of_a_key_wins_and_tombstones_are_kept() {
        let mut latest = BTreeMap::new();
        keep_newest(&mut latest, b"a", record(0, 1, 10, Some("1")));
        keep_newest(&mut latest, b"b", record(0, 2, 11, Some("2")));
        keep_newest(&mut latest, b"a", record(0, 3, 12, None));
        keep_newest(&mut latest, b"b", record(0, 4, 13, Some("3")));
        assert_eq!(latest[&b"a".to_vec()], record(0, 3, 12, None));
        assert_eq!(latest[&b"b".to_vec()], record(0, 4, 13, Some("3")));
    }

    #[test]
    fn within_a_partition_the_offset_decides_not_the_timestamp() {
        let mut latest = BTreeMap::new();
        keep_newest(&mut latest, b"a", record(0, 5, 100, Some("new")));
        // Delivered out of order (cannot happen in one partition, but the rule must not flip).
        keep_newest(&mut latest, b"a", record(0, 4, 200, Some("old")));
        assert_eq!(latest[&b"a".to_vec()].value.as_deref(), Some(&b"new"[..]));
    }

    #[test]
    fn across_partitions_the_later_timestamp_wins() {
        let mut latest = BTreeMap::new();
        keep_newest(&mut latest, b"a", record(1, 50, 200, Some("later")));
        keep_newest(&mut latest, b"a", record(0, 90, 100, Some("earlier")));
        assert_eq!(latest[&b"a".to_vec()].value.as_deref(), Some(&b"later"[..]));
        keep_newest(&mut latest, b"a", record(2, 1, 300, None));
        assert_eq!(latest[&b"a".to_vec()].value, None);
    }
}
