use std::time::Duration;

use rdkafka::{
    admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication},
    client::DefaultClientContext,
    types::RDKafkaErrorCode,
};

use super::{ClientSettings, Error};

/// A topic to create when missing.
#[derive(Debug, Clone)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    pub replication_factor: i32,
    /// Topic-level configs such as `cleanup.policy=compact`.
    pub configs: Vec<(String, String)>,
}

impl TopicSpec {
    pub fn new(name: impl Into<String>, partitions: i32) -> Self {
        Self {
            name: name.into(),
            partitions,
            replication_factor: 1,
            configs: Vec::new(),
        }
    }

    /// A compacted topic, as used for configs, statuses and offsets.
    pub fn compacted(name: impl Into<String>) -> Self {
        let mut spec = Self::new(name, 1);
        spec.configs
            .push(("cleanup.policy".to_owned(), "compact".to_owned()));
        spec
    }
}

/// Creates and deletes topics.
pub struct TopicAdmin {
    client: AdminClient<DefaultClientContext>,
    options: AdminOptions,
}

impl std::fmt::Debug for TopicAdmin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopicAdmin").finish_non_exhaustive()
    }
}

impl TopicAdmin {
    pub fn new(settings: &ClientSettings, request_timeout: Duration) -> Result<Self, Error> {
        let mut config = settings.base();
        config.set("socket.timeout.ms", request_timeout.as_millis().to_string());
        let client = settings
            .finish(config)
            .create()
            .map_err(|source| Error::CreateClient {
                client: "admin client",
                bootstrap_servers: settings.bootstrap_servers.clone(),
                source,
            })?;
        let options = AdminOptions::new()
            .request_timeout(Some(request_timeout))
            .operation_timeout(Some(request_timeout));
        Ok(Self { client, options })
    }

    /// Creates the topic; a topic of that name that already exists counts as success.
    pub async fn ensure_topic(&self, spec: &TopicSpec) -> Result<(), Error> {
        let mut topic = NewTopic::new(
            &spec.name,
            spec.partitions,
            TopicReplication::Fixed(spec.replication_factor),
        );
        for (key, value) in &spec.configs {
            topic = topic.set(key, value);
        }
        let results = self
            .client
            .create_topics([&topic], &self.options)
            .await
            .map_err(|source| Error::CreateTopic {
                topic: spec.name.clone(),
                source,
            })?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => return Err(Error::CreateTopicRejected { topic, code }),
            }
        }
        Ok(())
    }

    /// Deletes the topic; a topic that does not exist counts as success.
    pub async fn delete_topic(&self, name: &str) -> Result<(), Error> {
        let results = self
            .client
            .delete_topics(&[name], &self.options)
            .await
            .map_err(Error::Admin)?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
                Err((topic, code)) => return Err(Error::DeleteTopicRejected { topic, code }),
            }
        }
        Ok(())
    }

    /// The current value of one topic-level config (`cleanup.policy`, `retention.ms`...), with
    /// broker defaults applied; `None` when the broker does not report that key.
    pub async fn topic_config(&self, topic: &str, key: &str) -> Result<Option<String>, Error> {
        let results = self
            .client
            .describe_configs([&ResourceSpecifier::Topic(topic)], &self.options)
            .await
            .map_err(Error::Admin)?;
        // One resource asked for, one answer.
        match results.into_iter().next() {
            Some(Ok(resource)) => Ok(resource.get(key).and_then(|entry| entry.value.clone())),
            Some(Err(code)) => Err(Error::DescribeConfigsRejected {
                topic: topic.to_owned(),
                code,
            }),
            None => Ok(None),
        }
    }
}
