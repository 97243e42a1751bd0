use std::time::Duration;

use rdkafka::{
    ClientConfig,
    consumer::StreamConsumer,
    producer::{FutureProducer, Producer, ProducerContext},
};

use super::Error;

/// Connection settings shared by every client of one worker.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    pub bootstrap_servers: String,
    /// Extra librdkafka properties (`security.protocol`, `sasl.*`, tuning); applied last.
    pub overrides: Vec<(String, String)>,
}

impl ClientSettings {
    pub fn new(bootstrap_servers: impl Into<String>) -> Self {
        Self {
            bootstrap_servers: bootstrap_servers.into(),
            overrides: Vec::new(),
        }
    }

    pub(super) fn base(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap_servers);
        config
    }

    pub(super) fn finish(&self, mut config: ClientConfig) -> ClientConfig {
        for (key, value) in &self.overrides {
            config.set(key, value);
        }
        config
    }
}

/// A producer whose sends are grouped in Kafka transactions under `transactional_id`, with
/// transactions already initialised: a producer with the same id elsewhere is fenced from now on.
/// Each send returns a future of its delivery (partition and offset).
///
/// Settings follow the change-data-capture recommendation: idempotent (`acks=all`), batches of up
/// to 1 MB lingering 5 ms, lz4-compressed.
pub async fn transactional_producer(
    settings: &ClientSettings,
    transactional_id: &str,
    init_timeout: Duration,
) -> Result<FutureProducer, Error> {
    let config = transactional_config(settings, transactional_id);
    let producer: FutureProducer = config.create().map_err(|source| Error::CreateClient {
        client: "transactional producer",
        bootstrap_servers: settings.bootstrap_servers.clone(),
        source,
    })?;
    init_transactions(producer, transactional_id, init_timeout).await
}

pub(super) fn transactional_config(
    settings: &ClientSettings,
    transactional_id: &str,
) -> ClientConfig {
    let mut config = settings.base();
    config
        .set("transactional.id", transactional_id)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("batch.size", "1000000")
        .set("compression.type", "lz4")
        .set("queue.buffering.max.messages", "1000000");
    settings.finish(config)
}

pub(super) async fn init_transactions<C, P>(
    producer: P,
    transactional_id: &str,
    timeout: Duration,
) -> Result<P, Error>
where
    C: ProducerContext,
    P: Producer<C> + Send + 'static,
{
    // init_transactions blocks on network round trips; keep it off the async workers.
    tokio::task::spawn_blocking(move || producer.init_transactions(timeout).map(|()| producer))
        .await
        .expect("init_transactions does not panic")
        .map_err(|source| Error::InitTransactions {
            transactional_id: transactional_id.to_owned(),
            source,
        })
}

/// A consumer that sees only committed transactional records, starts from the earliest offset
/// when its group has none, and never commits offsets on its own.
pub fn read_committed_consumer(
    settings: &ClientSettings,
    group_id: &str,
) -> Result<StreamConsumer, Error> {
    let mut config = settings.base();
    config
        .set("group.id", group_id)
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest");
    settings
        .finish(config)
        .create()
        .map_err(|source| Error::CreateClient {
            client: "read_committed consumer",
            bootstrap_servers: settings.bootstrap_servers.clone(),
            source,
        })
}

/// A producer for single durable writes outside transactions (connector configs and statuses):
/// idempotent with `acks=all`, sent at once rather than batched, and giving up on a record after
/// `delivery_timeout`.
///
/// A write is durable once its delivery report arrives: await the future `send` returns.
pub fn idempotent_producer(
    settings: &ClientSettings,
    delivery_timeout: Duration,
) -> Result<FutureProducer, Error> {
    let mut config = settings.base();
    config
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "0")
        .set(
            "message.timeout.ms",
            delivery_timeout.as_millis().max(1).to_string(),
        );
    settings
        .finish(config)
        .create()
        .map_err(|source| Error::CreateClient {
            client: "idempotent producer",
            bootstrap_servers: settings.bootstrap_servers.clone(),
            source,
        })
}
