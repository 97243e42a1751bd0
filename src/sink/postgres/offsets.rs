//! The sink's offsets as the REST API shows and changes them (`/connectors/{name}/offsets`):
//! the rows of `tributary_offsets` in the target database, where the task itself reads them.

use std::collections::BTreeMap;

use super::{
    Error,
    connection::{TargetDatabase, connect_to},
    writer::{ensure_state_tables, load_offsets},
};

/// One partition's next offset to apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionOffset {
    pub topic: String,
    pub partition: i32,
    /// `None` in a change: forget the partition (it is read from the beginning).
    pub next_offset: Option<i64>,
}

/// The stored next offsets of every partition `connector` has applied (a sink or a window
/// stage writing to `target`), by topic and partition.
pub(crate) async fn stored_offsets(
    target: &TargetDatabase<'_>,
    connector: &str,
) -> Result<Vec<PartitionOffset>, Error> {
    let client = connect_to(target, &format!("tributary {connector} (offsets)")).await?;
    // A read creates nothing: before the first commit there is no table and no offset.
    let exists: bool = client
        .query_one(
            "SELECT to_regclass('public.tributary_offsets') IS NOT NULL",
            &[],
        )
        .await
        .map_err(Error::database("looking up tributary_offsets"))?
        .get(0);
    if !exists {
        return Ok(Vec::new());
    }
    let sorted: BTreeMap<(String, i32), i64> = load_offsets(&client, connector)
        .await?
        .into_iter()
        .collect();
    Ok(sorted
        .into_iter()
        .map(|((topic, partition), next)| PartitionOffset {
            topic,
            partition,
            next_offset: Some(next),
        })
        .collect())
}

/// Sets (`Some` offset) or forgets (`None`) the given partitions' offsets, or all of them when
/// `changes` is `None`, in one transaction. The connector must be stopped: the caller checks.
pub(crate) async fn change_offsets(
    target: &TargetDatabase<'_>,
    connector: &str,
    changes: Option<&[PartitionOffset]>,
) -> Result<(), Error> {
    let mut client = connect_to(target, &format!("tributary {connector} (offsets)")).await?;
    ensure_state_tables(&client).await?;
    let context = "changing tributary_offsets";
    let transaction = client
        .transaction()
        .await
        .map_err(Error::database(context))?;
    match changes {
        None => {
            transaction
                .execute(
                    "DELETE FROM public.tributary_offsets WHERE connector = $1",
                    &[&connector],
                )
                .await
                .map_err(Error::database(context))?;
        }
        Some(changes) => {
            for change in changes {
                let key: [&(dyn tokio_postgres::types::ToSql + Sync); 3] =
                    [&connector, &change.topic, &change.partition];
                match change.next_offset {
                    Some(next) => transaction
                        .execute(
                            "INSERT INTO public.tributary_offsets \
                             (connector, topic, partition, next_offset) VALUES ($1, $2, $3, $4) \
                             ON CONFLICT (connector, topic, partition) \
                             DO UPDATE SET next_offset = EXCLUDED.next_offset",
                            &[key[0], key[1], key[2], &next],
                        )
                        .await
                        .map_err(Error::database(context))?,
                    None => transaction
                        .execute(
                            "DELETE FROM public.tributary_offsets \
                             WHERE connector = $1 AND topic = $2 AND partition = $3",
                            &key,
                        )
                        .await
                        .map_err(Error::database(context))?,
                };
            }
        }
    }
    transaction.commit().await.map_err(Error::database(context))
}
