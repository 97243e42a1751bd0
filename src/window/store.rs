//! The window stage's side of the target database: the result table, the stage's state tables,
//! and the one transaction per commit that writes results, state deltas, partition clocks, the
//! watermark and the consumed offsets together (after checking the generation, so a stale
//! instance cannot commit).
//!
//! State tables (created when missing, keyed by connector):
//! - `tributary_window_cells`: one row per open (window, group) cell, its accumulators as JSON;
//!   only cells changed since the last commit are written.
//! - `tributary_window_rows`: the last image of each source row (retract mode).
//! - `tributary_window_partitions`: each partition's largest event time and snapshot flag.
//! - `tributary_window_watermarks`: the watermark.
//!
//! Offsets live in the sink's `tributary_offsets`, the generation in `tributary_sink_generations`.

use std::collections::{BTreeMap, HashMap};

use tokio::time::Instant;
use tokio_postgres::{Client, Transaction, types::ToSql};

use super::{
    Error,
    aggregate::{AggregateFn, Value},
    config::WindowAggregateConfig,
    engine::{CommitDelta, Engine, group_key_from_text, group_key_text},
    time::Micros,
    watermark::{PartitionId, WatermarkTracker},
};
use crate::{
    sink::postgres::{
        connection::connect_to,
        writer::{check_generation, load_offsets, store_offsets},
    },
    source::postgres::database::quote_identifier,
};

/// Creates the state tables when missing.
pub async fn ensure_state_tables(client: &Client) -> Result<(), Error> {
    crate::sink::postgres::writer::ensure_state_tables(client).await?;
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS public.tributary_window_cells (
                 connector text NOT NULL,
                 window_start bigint NOT NULL,
                 window_end bigint NOT NULL,
                 group_key text NOT NULL,
                 state text NOT NULL,
                 PRIMARY KEY (connector, window_start, window_end, group_key));
             CREATE TABLE IF NOT EXISTS public.tributary_window_rows (
                 connector text NOT NULL,
                 row_key text NOT NULL,
                 image text NOT NULL,
                 PRIMARY KEY (connector, row_key));
             CREATE TABLE IF NOT EXISTS public.tributary_window_partitions (
                 connector text NOT NULL,
                 topic text NOT NULL,
                 partition integer NOT NULL,
                 max_event_time bigint,
                 in_snapshot boolean NOT NULL,
                 PRIMARY KEY (connector, topic, partition));
             CREATE TABLE IF NOT EXISTS public.tributary_window_watermarks (
                 connector text PRIMARY KEY,
                 watermark bigint);",
        )
        .await
        .map_err(Error::database("creating the window state tables"))
}

/// Restores the engine and the watermark from the stored state; returns the stored offsets.
pub async fn load(
    client: &Client,
    connector: &str,
    engine: &mut Engine,
    tracker: &mut WatermarkTracker,
) -> Result<HashMap<PartitionId, i64>, Error> {
    let state_error = |message: String| Error::State {
        connector: connector.to_owned(),
        message,
    };
    let watermark: Option<Micros> = client
        .query_opt(
            "SELECT watermark FROM public.tributary_window_watermarks WHERE connector = $1",
            &[&connector],
        )
        .await
        .map_err(Error::database("reading tributary_window_watermarks"))?
        .and_then(|row| row.get(0));
    let partitions = client
        .query(
            "SELECT topic, partition, max_event_time, in_snapshot
               FROM public.tributary_window_partitions WHERE connector = $1",
            &[&connector],
        )
        .await
        .map_err(Error::database("reading tributary_window_partitions"))?;
    tracker.restore(
        watermark,
        partitions
            .iter()
            .map(|row| ((row.get(0), row.get(1)), row.get(2), row.get(3))),
        Instant::now(),
    );
    engine.set_watermark(watermark);
    let cells = client
        .query(
            "SELECT window_start, window_end, group_key, state
               FROM public.tributary_window_cells WHERE connector = $1",
            &[&connector],
        )
        .await
        .map_err(Error::database("reading tributary_window_cells"))?;
    for row in &cells {
        let window = super::time::Window::new(row.get(0), row.get(1));
        let group = group_key_from_text(row.get(2))
            .ok_or_else(|| state_error(format!("the group key of cell {window} cannot be read")))?;
        let state: serde_json::Value = serde_json::from_str(row.get(3))
            .map_err(|_| state_error(format!("cell {window} is not JSON")))?;
        engine
            .restore_cell(window, group, &state)
            .map_err(|m| state_error(format!("cell {window}: {m}")))?;
    }
    let rows = client
        .query(
            "SELECT row_key, image FROM public.tributary_window_rows WHERE connector = $1",
            &[&connector],
        )
        .await
        .map_err(Error::database("reading tributary_window_rows"))?;
    for row in &rows {
        let key: String = row.get(0);
        let image: serde_json::Value = serde_json::from_str(row.get(1))
            .map_err(|_| state_error("a row image is not JSON".to_owned()))?;
        engine
            .restore_row(key.into_boxed_str(), &image)
            .map_err(|m| state_error(format!("a row image: {m}")))?;
    }
    load_offsets(client, connector).await.map_err(Error::from)
}

/// The result table and the statements that write it.
#[derive(Debug)]
pub struct ResultTable {
    /// Quoted and qualified.
    table: String,
    schema: String,
    name: String,
    group_columns: Vec<String>,
    aggregates: Vec<(String, AggregateFn, Option<String>)>,
    /// Column types (group columns, then aggregates), once the table is known.
    types: Option<Vec<String>>,
}

const EPOCH_PLUS: &str = "timestamptz 'epoch' + interval '1 microsecond' *";

impl ResultTable {
    pub fn new(config: &WindowAggregateConfig) -> Self {
        Self {
            table: format!(
                "{}.{}",
                quote_identifier(&config.table_schema),
                quote_identifier(&config.table_name)
            ),
            schema: config.table_schema.clone(),
            name: config.table_name.clone(),
            group_columns: config.group_by.clone(),
            aggregates: config
                .aggregates
                .iter()
                .map(|a| (a.name.clone(), a.function, a.column.clone()))
                .collect(),
            types: None,
        }
    }

    fn display(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }

    /// Reads the table's column types, creating the table first when it is missing (with
    /// types from the source schema, `known`, or the first row's values).
    async fn ensure(
        &mut self,
        transaction: &Transaction<'_>,
        known: &HashMap<String, String>,
        sample: Option<&super::engine::ResultRow>,
    ) -> Result<Vec<String>, Error> {
        if let Some(types) = &self.types {
            return Ok(types.clone());
        }
        let columns = read_columns(transaction, &self.schema, &self.name).await?;
        let columns = if columns.is_empty() {
            let Some(sample) = sample else {
                // Nothing to write yet, nothing to create.
                return Ok(Vec::new());
            };
            self.create(transaction, known, sample).await?;
            read_columns(transaction, &self.schema, &self.name).await?
        } else {
            columns
        };
        let mut types = Vec::new();
        for name in self
            .group_columns
            .iter()
            .chain(self.aggregates.iter().map(|(name, _, _)| name))
        {
            let found = columns
                .iter()
                .find(|(column, _)| column == name)
                .map(|(_, t)| t.clone())
                .ok_or_else(|| Error::Table {
                    table: self.display(),
                    message: format!(
                        "has no column {name:?}; drop the table to have it created, or add the column"
                    ),
                })?;
            types.push(found);
        }
        self.types = Some(types.clone());
        Ok(types)
    }

    async fn create(
        &self,
        transaction: &Transaction<'_>,
        known: &HashMap<String, String>,
        sample: &super::engine::ResultRow,
    ) -> Result<(), Error> {
        let by_value = |value: Option<&Value>| match value {
            Some(Value::Int(_)) => "bigint",
            Some(Value::Num(_)) => "numeric",
            Some(Value::Bool(_)) => "boolean",
            _ => "text",
        };
        let mut definitions = Vec::new();
        for (index, column) in self.group_columns.iter().enumerate() {
            let kind = known
                .get(column)
                .cloned()
                .unwrap_or_else(|| by_value(sample.group.get(index)).to_owned());
            definitions.push(format!("{} {kind} NOT NULL", quote_identifier(column)));
        }
        definitions.push("window_start timestamptz NOT NULL".to_owned());
        definitions.push("window_end timestamptz NOT NULL".to_owned());
        for (index, (name, function, column)) in self.aggregates.iter().enumerate() {
            let kind = match function {
                AggregateFn::CountRows | AggregateFn::Count | AggregateFn::CountDistinct => {
                    "bigint".to_owned()
                }
                AggregateFn::Sum | AggregateFn::Avg => "numeric".to_owned(),
                AggregateFn::Min | AggregateFn::Max => column
                    .as_ref()
                    .and_then(|c| known.get(c).cloned())
                    .unwrap_or_else(|| by_value(sample.values.get(index)).to_owned()),
            };
            definitions.push(format!("{} {kind}", quote_identifier(name)));
        }
        definitions.push("_final boolean NOT NULL".to_owned());
        definitions.push("_updated_at timestamptz NOT NULL".to_owned());
        let key: Vec<String> = self
            .group_columns
            .iter()
            .map(|c| quote_identifier(c))
            .chain(["window_start".to_owned(), "window_end".to_owned()])
            .collect();
        let sql = format!(
            "CREATE SCHEMA IF NOT EXISTS {schema};
             CREATE TABLE IF NOT EXISTS {table} ({columns}, PRIMARY KEY ({key}))",
            schema = quote_identifier(&self.schema),
            table = self.table,
            columns = definitions.join(", "),
            key = key.join(", "),
        );
        transaction
            .batch_execute(&sql)
            .await
            .map_err(Error::database(format!(
                "creating result table {}",
                self.display()
            )))
    }

    /// Forgets the column types (after a rolled-back transaction that may have created it).
    pub fn forget(&mut self) {
        self.types = None;
    }

    async fn write(
        &mut self,
        transaction: &Transaction<'_>,
        delta: &CommitDelta,
        known: &HashMap<String, String>,
    ) -> Result<(), Error> {
        if delta.upserts.is_empty() && delta.deletes.is_empty() {
            return Ok(());
        }
        let types = self
            .ensure(transaction, known, delta.upserts.first())
            .await?;
        if types.is_empty() {
            return Ok(());
        }
        let groups = self.group_columns.len();
        let quoted_groups: Vec<String> = self
            .group_columns
            .iter()
            .map(|c| quote_identifier(c))
            .collect();
        if !delta.deletes.is_empty() {
            let mut columns: Vec<Vec<Option<String>>> = vec![Vec::new(); groups];
            let (mut starts, mut ends) = (Vec::new(), Vec::new());
            for (group, window) in &delta.deletes {
                for (column, value) in columns.iter_mut().zip(group.iter()) {
                    column.push(value.to_pg_text());
                }
                starts.push(window.start);
                ends.push(window.end);
            }
            let mut conditions: Vec<String> = quoted_groups
                .iter()
                .enumerate()
                .map(|(i, c)| format!("t.{c} = d.c{i}::{}", types[i]))
                .collect();
            conditions.push(format!("t.window_start = {EPOCH_PLUS} d.ws"));
            conditions.push(format!("t.window_end = {EPOCH_PLUS} d.we"));
            let mut params: Vec<&(dyn ToSql + Sync)> =
                columns.iter().map(|c| c as &(dyn ToSql + Sync)).collect();
            params.push(&starts);
            params.push(&ends);
            let sql = format!(
                "DELETE FROM {table} t USING unnest({arrays}) AS d({names}) WHERE {conditions}",
                table = self.table,
                arrays = (0..groups)
                    .map(|i| format!("${}::text[]", i + 1))
                    .chain([
                        format!("${}::int8[]", groups + 1),
                        format!("${}::int8[]", groups + 2)
                    ])
                    .collect::<Vec<_>>()
                    .join(", "),
                names = (0..groups)
                    .map(|i| format!("c{i}"))
                    .chain(["ws".to_owned(), "we".to_owned()])
                    .collect::<Vec<_>>()
                    .join(", "),
                conditions = conditions.join(" AND "),
            );
            transaction
                .execute(&sql, &params)
                .await
                .map_err(Error::database(format!(
                    "deleting emptied windows from {}",
                    self.display()
                )))?;
        }
        if !delta.upserts.is_empty() {
            let aggregates = self.aggregates.len();
            let mut columns: Vec<Vec<Option<String>>> = vec![Vec::new(); groups + aggregates];
            let (mut starts, mut ends, mut finals) = (Vec::new(), Vec::new(), Vec::new());
            for row in &delta.upserts {
                let values = row.group.iter().chain(row.values.iter());
                for (column, value) in columns.iter_mut().zip(values) {
                    column.push(value.to_pg_text());
                }
                starts.push(row.window.start);
                ends.push(row.window.end);
                finals.push(row.is_final);
            }
            let quoted_aggregates: Vec<String> = self
                .aggregates
                .iter()
                .map(|(n, _, _)| quote_identifier(n))
                .collect();
            let n = groups + aggregates;
            let mut params: Vec<&(dyn ToSql + Sync)> =
                columns.iter().map(|c| c as &(dyn ToSql + Sync)).collect();
            params.push(&starts);
            params.push(&ends);
            params.push(&finals);
            let selected: Vec<String> = (0..groups)
                .map(|i| format!("u.c{i}::{}", types[i]))
                .chain([format!("{EPOCH_PLUS} u.ws"), format!("{EPOCH_PLUS} u.we")])
                .chain((groups..n).map(|i| format!("u.c{i}::{}", types[i])))
                .chain(["u.f".to_owned(), "now()".to_owned()])
                .collect();
            let target: Vec<String> = quoted_groups
                .iter()
                .cloned()
                .chain(["window_start".to_owned(), "window_end".to_owned()])
                .chain(quoted_aggregates.iter().cloned())
                .chain(["_final".to_owned(), "_updated_at".to_owned()])
                .collect();
            let key: Vec<String> = quoted_groups
                .iter()
                .cloned()
                .chain(["window_start".to_owned(), "window_end".to_owned()])
                .collect();
            let updates: Vec<String> = quoted_aggregates
                .iter()
                .chain(&["_final".to_owned(), "_updated_at".to_owned()])
                .map(|c| format!("{c} = EXCLUDED.{c}"))
                .collect();
            let sql = format!(
                "INSERT INTO {table} ({target}) SELECT {selected} FROM unnest({arrays}) AS u({names})
                 ON CONFLICT ({key}) DO UPDATE SET {updates}",
                table = self.table,
                target = target.join(", "),
                selected = selected.join(", "),
                arrays = (0..n)
                    .map(|i| format!("${}::text[]", i + 1))
                    .chain([
                        format!("${}::int8[]", n + 1),
                        format!("${}::int8[]", n + 2),
                        format!("${}::bool[]", n + 3),
                    ])
                    .collect::<Vec<_>>()
                    .join(", "),
                names = (0..n)
                    .map(|i| format!("c{i}"))
                    .chain(["ws".to_owned(), "we".to_owned(), "f".to_owned()])
                    .collect::<Vec<_>>()
                    .join(", "),
                key = key.join(", "),
                updates = updates.join(", "),
            );
            transaction
                .execute(&sql, &params)
                .await
                .map_err(Error::database(format!(
                    "writing results into {}",
                    self.display()
                )))?;
        }
        Ok(())
    }
}

async fn read_columns(
    transaction: &Transaction<'_>,
    schema: &str,
    table: &str,
) -> Result<Vec<(String, String)>, Error> {
    let rows = transaction
        .query(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod)
               FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
               JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped
              ORDER BY a.attnum",
            &[&schema, &table],
        )
        .await
        .map_err(Error::database("reading the result table's columns"))?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// What one commit writes besides the engine's delta.
#[derive(Debug)]
pub struct Progress<'a> {
    pub connector: &'a str,
    pub generation: i64,
    pub tracker: &'a WatermarkTracker,
    pub offsets: &'a BTreeMap<PartitionId, i64>,
    /// Source column types seen so far (for creating the result table).
    pub column_types: &'a HashMap<String, String>,
}

/// Writes one commit in one transaction; nothing of it is visible unless all of it commits.
pub async fn commit(
    client: &mut Client,
    table: &mut ResultTable,
    delta: &CommitDelta,
    progress: &Progress<'_>,
) -> Result<(), Error> {
    let result = commit_transaction(client, table, delta, progress).await;
    if result.is_err() {
        table.forget();
    }
    result
}

async fn commit_transaction(
    client: &mut Client,
    table: &mut ResultTable,
    delta: &CommitDelta,
    progress: &Progress<'_>,
) -> Result<(), Error> {
    let connector = progress.connector;
    let transaction = client
        .transaction()
        .await
        .map_err(Error::database("beginning a transaction"))?;
    check_generation(&transaction, connector, progress.generation).await?;
    table
        .write(&transaction, delta, progress.column_types)
        .await?;

    let (mut stored, mut removed) = (Vec::new(), Vec::new());
    for (window, group, state) in &delta.cells {
        let key = (window.start, window.end, group_key_text(group));
        match state {
            Some(state) => stored.push((key, state.to_string())),
            None => removed.push(key),
        }
    }
    if !removed.is_empty() {
        let (starts, (ends, groups)): (Vec<i64>, (Vec<i64>, Vec<&str>)) = removed
            .iter()
            .map(|(s, e, g)| (*s, (*e, g.as_str())))
            .unzip();
        transaction
            .execute(
                "DELETE FROM public.tributary_window_cells c
                  USING unnest($2::int8[], $3::int8[], $4::text[]) AS d(s, e, g)
                  WHERE c.connector = $1 AND c.window_start = d.s AND c.window_end = d.e
                    AND c.group_key = d.g",
                &[&connector, &starts, &ends, &groups],
            )
            .await
            .map_err(Error::database(
                "removing cells from tributary_window_cells",
            ))?;
    }
    if !stored.is_empty() {
        let (keys, states): (Vec<&(i64, i64, String)>, Vec<&str>) =
            stored.iter().map(|(k, s)| (k, s.as_str())).unzip();
        let starts: Vec<i64> = keys.iter().map(|k| k.0).collect();
        let ends: Vec<i64> = keys.iter().map(|k| k.1).collect();
        let groups: Vec<&str> = keys.iter().map(|k| k.2.as_str()).collect();
        transaction
            .execute(
                "INSERT INTO public.tributary_window_cells (connector, window_start, window_end, group_key, state)
                 SELECT $1, s, e, g, st FROM unnest($2::int8[], $3::int8[], $4::text[], $5::text[]) AS u(s, e, g, st)
                 ON CONFLICT (connector, window_start, window_end, group_key) DO UPDATE SET state = EXCLUDED.state",
                &[&connector, &starts, &ends, &groups, &states],
            )
            .await
            .map_err(Error::database("storing cells in tributary_window_cells"))?;
    }

    let (mut images, mut gone) = (Vec::new(), Vec::new());
    for (key, image) in &delta.rows {
        match image {
            Some(image) => images.push((&**key, image.to_string())),
            None => gone.push(&**key),
        }
    }
    if !gone.is_empty() {
        transaction
            .execute(
                "DELETE FROM public.tributary_window_rows WHERE connector = $1 AND row_key = ANY($2::text[])",
                &[&connector, &gone],
            )
            .await
            .map_err(Error::database("removing row images from tributary_window_rows"))?;
    }
    if !images.is_empty() {
        let (keys, values): (Vec<&str>, Vec<&str>) =
            images.iter().map(|(k, v)| (*k, v.as_str())).unzip();
        transaction
            .execute(
                "INSERT INTO public.tributary_window_rows (connector, row_key, image)
                 SELECT $1, k, i FROM unnest($2::text[], $3::text[]) AS u(k, i)
                 ON CONFLICT (connector, row_key) DO UPDATE SET image = EXCLUDED.image",
                &[&connector, &keys, &values],
            )
            .await
            .map_err(Error::database(
                "storing row images in tributary_window_rows",
            ))?;
    }

    let (mut topics, mut partitions, mut maxima, mut snapshots) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for ((topic, partition), clock) in progress.tracker.partitions() {
        topics.push(topic.as_str());
        partitions.push(*partition);
        maxima.push(clock.max_event_time);
        snapshots.push(clock.in_snapshot);
    }
    transaction
        .execute(
            "INSERT INTO public.tributary_window_partitions (connector, topic, partition, max_event_time, in_snapshot)
             SELECT $1, t, p, m, s FROM unnest($2::text[], $3::int4[], $4::int8[], $5::bool[]) AS u(t, p, m, s)
             ON CONFLICT (connector, topic, partition)
             DO UPDATE SET max_event_time = EXCLUDED.max_event_time, in_snapshot = EXCLUDED.in_snapshot",
            &[&connector, &topics, &partitions, &maxima, &snapshots],
        )
        .await
        .map_err(Error::database("storing partition clocks in tributary_window_partitions"))?;
    transaction
        .execute(
            "INSERT INTO public.tributary_window_watermarks (connector, watermark) VALUES ($1, $2)
             ON CONFLICT (connector) DO UPDATE SET watermark = EXCLUDED.watermark",
            &[&connector, &progress.tracker.current()],
        )
        .await
        .map_err(Error::database(
            "storing the watermark in tributary_window_watermarks",
        ))?;
    store_offsets(&transaction, connector, progress.offsets).await?;
    transaction
        .commit()
        .await
        .map_err(Error::database("committing window results"))
}

/// Forgets everything `config`'s stage has read and written: its offsets, its state and the rows
/// of its result table, in one transaction, so that the next start recomputes every window from
/// the beginning of the topics (`DELETE /connectors/{name}/offsets`; the connector is stopped).
pub async fn reset(config: &WindowAggregateConfig) -> Result<(), Error> {
    let application_name = format!("tributary window {} (reset)", config.name);
    let mut client = connect_to(&config.target(), &application_name).await?;
    ensure_state_tables(&client).await?;
    let transaction = client
        .transaction()
        .await
        .map_err(Error::database("resetting the window stage"))?;
    for table in [
        "tributary_offsets",
        "tributary_window_cells",
        "tributary_window_rows",
        "tributary_window_partitions",
        "tributary_window_watermarks",
    ] {
        transaction
            .execute(
                &format!("DELETE FROM public.{table} WHERE connector = $1"),
                &[&config.name],
            )
            .await
            .map_err(Error::database(format!("resetting {table}")))?;
    }
    let result_table = format!(
        "{}.{}",
        quote_identifier(&config.table_schema),
        quote_identifier(&config.table_name)
    );
    let exists: bool = transaction
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&result_table])
        .await
        .map_err(Error::database("looking up the result table"))?
        .get(0);
    if exists {
        transaction
            .execute(&format!("DELETE FROM {result_table}"), &[])
            .await
            .map_err(Error::database(format!("emptying {result_table}")))?;
    }
    transaction
        .commit()
        .await
        .map_err(Error::database("resetting the window stage"))
}
