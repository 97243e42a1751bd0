//! The target side: tables (created and evolved from event schemas), batched writes and the
//! offsets stored with them, all in one transaction per batch.
//!
//! Values are bound as one array per column, so one statement writes a whole batch of a table
//! whatever its size (`INSERT … SELECT … FROM (SELECT unnest($1), …)`). Integer, numeric, date
//! and timestamp columns take arrays of their own type in binary form when every value of the
//! batch has that type; everything else goes as `text[]`, cast in SQL to the column's catalog type.
//! The arrays are unnested in the select list (a `ProjectSet`, row by row) rather than in `FROM`,
//! which would first copy the batch into a tuplestore.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    fmt,
    sync::{Arc, RwLock},
};

use bytes::{BufMut, BytesMut};
use chrono::Datelike;
use tokio_postgres::{
    Client, Statement, Transaction,
    types::{IsNull, ToSql, Type, to_sql_checked},
};
use tracing::{info, warn};

use super::{
    Error,
    config::{InsertMode, SchemaChanges},
    record::{Change, ColumnValue},
    types::{Cell, FieldSchema},
};
use crate::source::postgres::database::quote_identifier;

/// A target table, by schema and name (both taken literally, never case-folded).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct TableName {
    pub schema: String,
    pub name: String,
}

impl fmt::Display for TableName {
    /// The quoted, qualified name: safe to put into SQL.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{}",
            quote_identifier(&self.schema),
            quote_identifier(&self.name)
        )
    }
}

/// One change to a table after reduction: its key and what to do.
#[derive(Debug, Clone)]
pub(crate) struct PendingChange {
    pub key: Vec<ColumnValue>,
    pub change: Change,
    /// The index in its batch of the record this change comes from (the last one for its key).
    pub origin: usize,
    /// The key's first change in the batch created its source row (a Debezium create keyed
    /// by the source's primary key): a target that follows the source has no such row yet,
    /// so a plain INSERT can write it (see `Writer::plain_creates_paused`).
    pub created: bool,
}

/// A table's columns as the catalog has them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TargetTable {
    /// Name and `format_type` of every column, in column order.
    columns: Vec<(String, String)>,
}

impl TargetTable {
    fn column_type(&self, name: &str) -> Option<&str> {
        self.columns
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t.as_str())
    }
}

/// The shapes of the tables as of the last committed batch, for encoding the next batch's
/// values ahead of its transaction (`encode_ahead`).
pub(crate) type KnownTables = Arc<RwLock<HashMap<TableName, TargetTable>>>;

/// One table's changes of a batch, split and encoded as statement parameters for the table's
/// shape `target`.
#[derive(Debug)]
pub(crate) struct Encoded {
    target: TargetTable,
    /// The key columns of the deletes (empty without deletes).
    deletes: Vec<ColumnArray>,
    writes: Vec<Shape>,
}

/// Encodes each table's changes for the shape the table had at the last commit, so that the
/// decoder thread does it while the previous batch is written. Tables not known yet, and
/// writes with columns the table lacks, are left to the writer.
pub(crate) fn encode_ahead(
    known: &KnownTables,
    changes: &BTreeMap<TableName, Vec<PendingChange>>,
) -> HashMap<TableName, Encoded> {
    let known = match known.read() {
        Ok(known) => known,
        // A writer that panicked while publishing: nothing is encoded ahead.
        Err(_) => return HashMap::new(),
    };
    changes
        .iter()
        .filter_map(|(table, changes)| {
            let target = known.get(table)?;
            let (writes, deletes) = split(changes);
            // Rows named like the row checked before them need no look-ups (see
            // `ensure_columns`).
            let mut checked: Option<(&[ColumnValue], &[ColumnValue])> = None;
            let complete = writes.iter().all(|w| {
                let Change::Write(cells) = &w.change else {
                    return true;
                };
                if checked.is_some_and(|(cells_before, key_before)| {
                    same_names(cells_before, cells) && same_names(key_before, &w.key)
                }) {
                    return true;
                }
                checked = Some((cells, &w.key));
                cells
                    .iter()
                    .chain(&w.key)
                    .all(|c| target.column_type(&c.name).is_some())
            });
            if !complete {
                return None;
            }
            let encoded = encode(table, target, &writes, &deletes).ok()?;
            Some((table.clone(), encoded))
        })
        .collect()
}

/// The writes and the deletes among `changes`.
fn split(changes: &[PendingChange]) -> (Vec<&PendingChange>, Vec<&PendingChange>) {
    let mut writes: Vec<&PendingChange> = Vec::with_capacity(changes.len());
    let mut deletes: Vec<&PendingChange> = Vec::new();
    for change in changes {
        match change.change {
            Change::Write(_) => writes.push(change),
            Change::Delete => deletes.push(change),
            Change::Truncate => {}
        }
    }
    (writes, deletes)
}

/// The parameters of `writes` and `deletes` for `target`.
fn encode(
    table: &TableName,
    target: &TargetTable,
    writes: &[&PendingChange],
    deletes: &[&PendingChange],
) -> Result<Encoded, Error> {
    let mut delete_keys = Vec::new();
    if let Some(first) = deletes.first() {
        let key_names: Vec<&str> = first.key.iter().map(|c| &*c.name).collect();
        for (name, ty) in typed_columns(table, target, &key_names)? {
            let cells: Vec<Option<&Cell>> = deletes.iter().map(|d| key_cell(d, name)).collect();
            delete_keys.push(ColumnArray::new(Binding::for_column(ty), &cells));
        }
    }
    Ok(Encoded {
        target: target.clone(),
        deletes: delete_keys,
        writes: write_shapes(target, writes),
    })
}

/// Creates the sink's own tables when missing.
pub(crate) async fn ensure_state_tables(client: &Client) -> Result<(), Error> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS public.tributary_offsets (
                 connector text NOT NULL,
                 topic text NOT NULL,
                 partition integer NOT NULL,
                 next_offset bigint NOT NULL,
                 PRIMARY KEY (connector, topic, partition));
             CREATE TABLE IF NOT EXISTS public.tributary_sink_generations (
                 connector text PRIMARY KEY,
                 generation bigint NOT NULL);",
        )
        .await
        .map_err(Error::database(
            "creating tables tributary_offsets and tributary_sink_generations",
        ))
}

/// Takes the next generation of `connector`: from now on older tasks cannot commit.
///
/// Waits for a batch an older task is committing (it holds its generation row FOR SHARE), so
/// offsets read after this include that batch.
pub(crate) async fn claim_generation(client: &Client, connector: &str) -> Result<i64, Error> {
    let row = client
        .query_one(
            "INSERT INTO public.tributary_sink_generations AS g (connector, generation) VALUES ($1, 1)
             ON CONFLICT (connector) DO UPDATE SET generation = g.generation + 1
             RETURNING generation",
            &[&connector],
        )
        .await
        .map_err(Error::database("claiming a generation in tributary_sink_generations"))?;
    Ok(row.get(0))
}

/// The stored next offset of every topic-partition of `connector`.
pub(crate) async fn load_offsets(
    client: &Client,
    connector: &str,
) -> Result<HashMap<(String, i32), i64>, Error> {
    let rows = client
        .query(
            "SELECT topic, partition, next_offset FROM public.tributary_offsets WHERE connector = $1",
            &[&connector],
        )
        .await
        .map_err(Error::database("reading tributary_offsets"))?;
    Ok(rows
        .iter()
        .map(|row| ((row.get(0), row.get(1)), row.get(2)))
        .collect())
}

/// Fails with `Fenced` unless `generation` is still the newest of `connector`; holds the
/// generation row FOR SHARE until `transaction` ends, so a newer claim waits for this commit.
pub(crate) async fn check_generation(
    transaction: &Transaction<'_>,
    connector: &str,
    generation: i64,
) -> Result<(), Error> {
    let current: Option<i64> = transaction
        .query_opt(
            "SELECT generation FROM public.tributary_sink_generations WHERE connector = $1 FOR SHARE",
            &[&connector],
        )
        .await
        .map_err(Error::database("checking the generation"))?
        .map(|row| row.get(0));
    if current != Some(generation) {
        return Err(Error::Fenced {
            connector: connector.to_owned(),
            ours: generation,
            current: current.unwrap_or(0),
        });
    }
    Ok(())
}

/// Stores the next offset of each topic-partition of `connector` in `tributary_offsets`.
pub(crate) async fn store_offsets(
    transaction: &Transaction<'_>,
    connector: &str,
    offsets: &BTreeMap<(String, i32), i64>,
) -> Result<(), Error> {
    let (topics, (partitions, next)): (Vec<&str>, (Vec<i32>, Vec<i64>)) = offsets
        .iter()
        .map(|((topic, partition), next)| (topic.as_str(), (*partition, *next)))
        .unzip();
    transaction
        .execute(
            "INSERT INTO public.tributary_offsets (connector, topic, partition, next_offset)
             SELECT $1, t, p, o FROM unnest($2::text[], $3::int4[], $4::int8[]) AS u(t, p, o)
             ON CONFLICT (connector, topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset",
            &[&connector, &topics, &partitions, &next],
        )
        .await
        .map_err(Error::database("storing offsets in tributary_offsets"))?;
    Ok(())
}

/// Applies batches; remembers table shapes between them.
#[derive(Debug)]
pub(crate) struct Writer {
    connector: String,
    generation: i64,
    insert_mode: InsertMode,
    schema_changes: SchemaChanges,
    tables: HashMap<TableName, TargetTable>,
    /// `tables` as of the last commit, for `encode_ahead`.
    published: KnownTables,
    /// Prepared once per statement text (one per table and column set), on this connection.
    statements: HashMap<String, Statement>,
    /// Tables whose creates are upserted like any write for this many more batches: a plain
    /// INSERT of a create found the row already there (a replaying source, rows written by
    /// someone else, several topics into one table).
    plain_creates_paused: HashMap<TableName, u32>,
    /// The table whose plain INSERT of creates hit an existing row in the current attempt.
    create_conflict: Option<TableName>,
}

/// Batches a table's creates are upserted after a plain INSERT of them met an existing row.
const PLAIN_CREATES_PAUSE: u32 = 100;

impl Writer {
    pub(crate) fn new(
        connector: String,
        generation: i64,
        insert_mode: InsertMode,
        schema_changes: SchemaChanges,
    ) -> Self {
        Self {
            connector,
            generation,
            insert_mode,
            schema_changes,
            tables: HashMap::new(),
            published: KnownTables::default(),
            statements: HashMap::new(),
            plain_creates_paused: HashMap::new(),
            create_conflict: None,
        }
    }

    /// Empties the `truncates` tables, then writes `changes` and the consumed `offsets` (next
    /// offset per topic-partition), in one transaction: nothing of it is visible unless all of
    /// it commits. (Changes read before a table's truncate in the batch are dropped beforehand.)
    ///
    /// `encoded` holds tables' changes encoded ahead (`encode_ahead`); one is used when its
    /// table still has the shape it was encoded for.
    pub(crate) async fn write(
        &mut self,
        client: &mut Client,
        truncates: &BTreeSet<TableName>,
        changes: &BTreeMap<TableName, Vec<PendingChange>>,
        encoded: &HashMap<TableName, Encoded>,
        offsets: &BTreeMap<(String, i32), i64>,
    ) -> Result<(), Error> {
        let mut result = self
            .write_transaction(client, truncates, changes, encoded, offsets)
            .await;
        // Creates found their rows there: the same batch again, those upserted. (Nothing of
        // the failed attempt is committed; the retry needs no backoff.)
        while result.is_err()
            && let Some(table) = self.create_conflict.take()
        {
            warn!(table = %table, "a created row was already in the table; its creates are upserted for the next {PLAIN_CREATES_PAUSE} batches");
            self.plain_creates_paused.insert(table, PLAIN_CREATES_PAUSE);
            self.tables.clear();
            self.statements.clear();
            result = self
                .write_transaction(client, truncates, changes, encoded, offsets)
                .await;
        }
        if result.is_ok() {
            self.plain_creates_paused.retain(|_, left| {
                *left -= 1;
                *left > 0
            });
        }
        if result.is_err() {
            // DDL of the rolled-back transaction is gone too, and the connection may be new:
            // read shapes and prepare statements afresh.
            self.tables.clear();
            self.statements.clear();
        } else if let Ok(mut published) = self.published.write()
            && *published != self.tables
        {
            published.clone_from(&self.tables);
        }
        result
    }

    /// The table shapes as of the last commit, shared with whoever encodes ahead.
    pub(crate) fn known_tables(&self) -> KnownTables {
        Arc::clone(&self.published)
    }

    /// Applies the changes one at a time, each under a savepoint, in a transaction that is
    /// rolled back: which changes does the database reject for their data (SQLSTATE classes 22
    /// and 23)? Returns each with its table, position in `changes` and SQLSTATE.
    pub(crate) async fn find_rejected(
        &mut self,
        client: &mut Client,
        truncates: &BTreeSet<TableName>,
        changes: &BTreeMap<TableName, Vec<PendingChange>>,
    ) -> Result<Vec<(TableName, usize, String)>, Error> {
        let mut rejected = Vec::new();
        let mut transaction = client
            .transaction()
            .await
            .map_err(Error::database("beginning a transaction"))?;
        self.truncate(&transaction, truncates).await?;
        for (table, table_changes) in changes {
            for (index, change) in table_changes.iter().enumerate() {
                let savepoint = transaction
                    .savepoint("tributary_change")
                    .await
                    .map_err(Error::database("setting a savepoint"))?;
                match self
                    // Upserts only: a create whose row exists is not a rejected record.
                    .apply(&savepoint, table, std::slice::from_ref(change), None, false)
                    .await
                {
                    Ok(()) => savepoint
                        .commit()
                        .await
                        .map_err(Error::database("releasing a savepoint"))?,
                    Err(err) => match err.data_sqlstate() {
                        Some(code) => {
                            rejected.push((table.clone(), index, code.to_owned()));
                            savepoint
                                .rollback()
                                .await
                                .map_err(Error::database("rolling back to a savepoint"))?;
                            // Shapes read or created under the savepoint are gone with it.
                            self.tables.clear();
                            self.statements.clear();
                        }
                        None => return Err(err),
                    },
                }
            }
        }
        transaction
            .rollback()
            .await
            .map_err(Error::database("rolling back the probe"))?;
        self.tables.clear();
        self.statements.clear();
        Ok(rejected)
    }

    async fn write_transaction(
        &mut self,
        client: &mut Client,
        truncates: &BTreeSet<TableName>,
        changes: &BTreeMap<TableName, Vec<PendingChange>>,
        encoded: &HashMap<TableName, Encoded>,
        offsets: &BTreeMap<(String, i32), i64>,
    ) -> Result<(), Error> {
        let transaction = client
            .transaction()
            .await
            .map_err(Error::database("beginning a transaction"))?;
        check_generation(&transaction, &self.connector, self.generation).await?;
        self.truncate(&transaction, truncates).await?;
        for (table, table_changes) in changes {
            let plain_creates = !self.plain_creates_paused.contains_key(table);
            self.apply(
                &transaction,
                table,
                table_changes,
                encoded.get(table),
                plain_creates,
            )
            .await?;
        }
        store_offsets(&transaction, &self.connector, offsets).await?;
        transaction
            .commit()
            .await
            .map_err(Error::database("committing a batch"))
    }

    async fn truncate(
        &mut self,
        transaction: &Transaction<'_>,
        truncates: &BTreeSet<TableName>,
    ) -> Result<(), Error> {
        for table in truncates {
            // A table that does not exist has nothing to empty.
            if self.target(transaction, table, &[]).await?.is_some() {
                transaction
                    .batch_execute(&format!("TRUNCATE {table}"))
                    .await
                    .map_err(Error::database(format!("truncating {table}")))?;
            }
        }
        Ok(())
    }

    async fn apply(
        &mut self,
        transaction: &Transaction<'_>,
        table: &TableName,
        changes: &[PendingChange],
        ahead: Option<&Encoded>,
        plain_creates: bool,
    ) -> Result<(), Error> {
        let (writes, deletes) = split(changes);
        let Some(target) = self.target(transaction, table, &writes).await? else {
            // Only deletes for a table that does not exist: nothing to delete.
            return Ok(());
        };
        self.ensure_columns(transaction, table, &target, &writes)
            .await?;
        let target = self.tables.get(table).cloned().unwrap_or(target);
        let built;
        let encoded = match ahead {
            Some(encoded) if encoded.target == target => encoded,
            _ => {
                built = encode(table, &target, &writes, &deletes)?;
                &built
            }
        };

        if let Some(first) = deletes.first() {
            let key_names: Vec<&str> = first.key.iter().map(|c| &*c.name).collect();
            let columns = typed_columns(table, &target, &key_names)?;
            let conditions: Vec<String> = columns
                .iter()
                .enumerate()
                .map(|(i, (name, ty))| format!("t.{} = u.c{i}::{ty}", quote_identifier(name)))
                .collect();
            let sql = format!(
                "DELETE FROM {table} AS t USING {} WHERE {}",
                unnest(&encoded.deletes),
                conditions.join(" AND ")
            );
            let statement = self.prepared(transaction, &sql, table).await?;
            execute_columns(transaction, &statement, &encoded.deletes, table).await?;
        }

        // One statement per set of columns present (unchanged TOASTed values left out).
        let key_names: Vec<&str> = writes
            .first()
            .map(|w| w.key.iter().map(|c| &*c.name).collect())
            .unwrap_or_default();
        for shape in &encoded.writes {
            let names: Vec<&str> = shape
                .present
                .iter()
                .map(|&i| target.columns[i].0.as_str())
                .collect();
            let columns = typed_columns(table, &target, &names)?;
            // A plain INSERT of rows that cannot exist yet: ON CONFLICT inserts each row
            // speculatively and confirms it, which took PostgreSQL 75 % longer per new row.
            let plain = plain_creates && shape.created && self.insert_mode == InsertMode::Upsert;
            let mode = if plain {
                InsertMode::Insert
            } else {
                self.insert_mode
            };
            let sql = write_sql(mode, table, &columns, &shape.arrays, &key_names)?;
            let Some(sql) = sql else { continue };
            let statement = self.prepared(transaction, &sql, table).await?;
            let result = execute_columns(transaction, &statement, &shape.arrays, table).await;
            if plain && result.as_ref().is_err_and(Error::is_unique_violation) {
                self.create_conflict = Some(table.clone());
            }
            result?;
        }
        Ok(())
    }

    async fn prepared(
        &mut self,
        transaction: &Transaction<'_>,
        sql: &str,
        table: &TableName,
    ) -> Result<Statement, Error> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = transaction
            .prepare(sql)
            .await
            .map_err(Error::database(format!(
                "preparing a statement for {table}"
            )))?;
        self.statements.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }

    /// The table's shape, creating the table when that is allowed; `None` when it does not
    /// exist and there is nothing to create it for.
    async fn target(
        &mut self,
        transaction: &Transaction<'_>,
        table: &TableName,
        writes: &[&PendingChange],
    ) -> Result<Option<TargetTable>, Error> {
        if let Some(target) = self.tables.get(table) {
            return Ok(Some(target.clone()));
        }
        if let Some(target) = read_table(transaction, table).await? {
            self.tables.insert(table.clone(), target.clone());
            return Ok(Some(target));
        }
        let Some(first) = writes.first() else {
            return Ok(None);
        };
        if !self.schema_changes.create_tables {
            return Err(Error::Table {
                table: table.to_string(),
                message: "does not exist; create it, or set schema.evolution=basic so the sink \
                          creates it from the event schema"
                    .to_owned(),
            });
        }
        let Change::Write(cells) = &first.change else {
            return Ok(None);
        };
        let mut definitions = Vec::new();
        let mut columns: Vec<&ColumnValue> = cells.iter().collect();
        for key in &first.key {
            if !columns.iter().any(|c| c.name == key.name) {
                columns.push(key);
            }
        }
        for column in columns {
            let schema = column
                .schema
                .as_ref()
                .or_else(|| {
                    first
                        .key
                        .iter()
                        .find(|k| k.name == column.name)
                        .and_then(|k| k.schema.as_ref())
                })
                .ok_or_else(|| Error::Table {
                    table: table.to_string(),
                    message: "does not exist and the records carry no schema to create it from; \
                              create it, or set value.converter.schemas.enable=true at the source"
                        .to_owned(),
                })?;
            let is_key = first.key.iter().any(|k| k.name == column.name);
            definitions.push(column_definition(&column.name, schema, is_key));
        }
        if !first.key.is_empty() {
            let keys: Vec<String> = first
                .key
                .iter()
                .map(|k| quote_identifier(&k.name))
                .collect();
            definitions.push(format!("PRIMARY KEY ({})", keys.join(", ")));
        }
        let sql = format!(
            "CREATE SCHEMA IF NOT EXISTS {}; CREATE TABLE IF NOT EXISTS {table} ({})",
            quote_identifier(&table.schema),
            definitions.join(", ")
        );
        transaction
            .batch_execute(&sql)
            .await
            .map_err(Error::database(format!("creating table {table}")))?;
        info!(table = %table, "created target table");
        let target = read_table(transaction, table)
            .await?
            .ok_or_else(|| Error::Table {
                table: table.to_string(),
                message: "was created but cannot be found in the catalog".to_owned(),
            })?;
        self.tables.insert(table.clone(), target.clone());
        Ok(Some(target))
    }

    /// Adds the columns the writes have and the table lacks (`schema.evolution=basic`).
    async fn ensure_columns(
        &mut self,
        transaction: &Transaction<'_>,
        table: &TableName,
        target: &TargetTable,
        writes: &[&PendingChange],
    ) -> Result<(), Error> {
        let mut missing: Vec<&ColumnValue> = Vec::new();
        // Rows of a batch nearly always carry the same columns: a row named like the one
        // checked before it needs no look-ups.
        let mut checked: Option<(&[ColumnValue], &[ColumnValue])> = None;
        for write in writes {
            let Change::Write(cells) = &write.change else {
                continue;
            };
            if checked.is_some_and(|(previous_cells, previous_key)| {
                same_names(previous_cells, cells) && same_names(previous_key, &write.key)
            }) {
                continue;
            }
            checked = Some((cells, &write.key));
            for column in cells.iter().chain(&write.key) {
                if target.column_type(&column.name).is_none()
                    && !missing.iter().any(|m| m.name == column.name)
                {
                    missing.push(column);
                }
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        let names = || {
            missing
                .iter()
                .map(|c| format!("{:?}", c.name))
                .collect::<Vec<_>>()
                .join(", ")
        };
        if !self.schema_changes.add_columns {
            return Err(Error::Table {
                table: table.to_string(),
                message: format!(
                    "has no column {}; add it, or set schema.evolution=basic so the sink adds new columns",
                    names()
                ),
            });
        }
        let mut additions = Vec::new();
        for column in &missing {
            let Some(schema) = &column.schema else {
                return Err(Error::Table {
                    table: table.to_string(),
                    message: format!(
                        "has no column {} and the records carry no schema to add it from",
                        names()
                    ),
                });
            };
            // New columns are nullable: rows written before have no value for them.
            additions.push(format!(
                "ADD COLUMN IF NOT EXISTS {} {}",
                quote_identifier(&column.name),
                schema.postgres_type()
            ));
        }
        transaction
            .batch_execute(&format!("ALTER TABLE {table} {}", additions.join(", ")))
            .await
            .map_err(Error::database(format!("adding columns to {table}")))?;
        info!(table = %table, columns = %names(), "added columns to target table");
        let target = read_table(transaction, table)
            .await?
            .ok_or_else(|| Error::Table {
                table: table.to_string(),
                message: "disappeared while columns were added".to_owned(),
            })?;
        self.tables.insert(table.clone(), target);
        Ok(())
    }
}

/// Whether `a` and `b` name the same columns in the same order (names shared from one schema
/// compare by pointer).
fn same_names(a: &[ColumnValue], b: &[ColumnValue]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(a, b)| Arc::ptr_eq(&a.name, &b.name) || a.name == b.name)
}

fn column_definition(name: &str, schema: &FieldSchema, is_key: bool) -> String {
    let not_null = if is_key || !schema.optional {
        " NOT NULL"
    } else {
        ""
    };
    format!(
        "{} {}{not_null}",
        quote_identifier(name),
        schema.postgres_type()
    )
}

fn key_cell<'a>(change: &'a PendingChange, name: &str) -> Option<&'a Cell> {
    change
        .key
        .iter()
        .find(|c| *c.name == *name)
        .map(|c| &c.cell)
}

/// The statement writing rows of `columns` from `arrays` as `insert_mode` says; `None` when
/// there is nothing to do (an update of key columns only).
fn write_sql(
    insert_mode: InsertMode,
    table: &TableName,
    columns: &[(&str, &str)],
    arrays: &[ColumnArray],
    key_names: &[&str],
) -> Result<Option<String>, Error> {
    let quoted: Vec<String> = columns.iter().map(|(n, _)| quote_identifier(n)).collect();
    let casts: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(i, (_, ty))| format!("u.c{i}::{ty}"))
        .collect();
    let is_key = |name: &str| key_names.contains(&name);
    let insert = format!(
        "INSERT INTO {table} ({}) SELECT {} FROM {}",
        quoted.join(", "),
        casts.join(", "),
        unnest(arrays)
    );
    let updates: Vec<String> = columns
        .iter()
        .filter(|(n, _)| !is_key(n))
        .map(|(n, _)| format!("{0} = EXCLUDED.{0}", quote_identifier(n)))
        .collect();
    let conflict_target: Vec<String> = key_names.iter().map(|n| quote_identifier(n)).collect();
    Ok(Some(match insert_mode {
        InsertMode::Insert => insert,
        InsertMode::Upsert if key_names.is_empty() => {
            return Err(Error::Table {
                table: table.to_string(),
                message: "upsert needs key columns; use primary.key.mode=record_key".to_owned(),
            });
        }
        InsertMode::Upsert if updates.is_empty() => {
            format!(
                "{insert} ON CONFLICT ({}) DO NOTHING",
                conflict_target.join(", ")
            )
        }
        InsertMode::Upsert => format!(
            "{insert} ON CONFLICT ({}) DO UPDATE SET {}",
            conflict_target.join(", "),
            updates.join(", ")
        ),
        InsertMode::Update => {
            let mut sets = Vec::new();
            let mut conditions = Vec::new();
            for (i, (name, ty)) in columns.iter().enumerate() {
                let assignment = format!("{} = u.c{i}::{ty}", quote_identifier(name));
                if is_key(name) {
                    conditions.push(format!("t.{assignment}"));
                } else {
                    sets.push(assignment);
                }
            }
            if sets.is_empty() || conditions.len() != key_names.len() {
                return Ok(None);
            }
            format!(
                "UPDATE {table} AS t SET {} FROM {} WHERE {}",
                sets.join(", "),
                unnest(arrays),
                conditions.join(" AND ")
            )
        }
    }))
}

/// Writes of one set of columns, as one array per column.
#[derive(Debug)]
struct Shape {
    /// The columns' positions in the table.
    present: Vec<usize>,
    /// All of them are creates (`PendingChange::created`).
    created: bool,
    arrays: Vec<ColumnArray>,
}

/// Groups `writes` by the set of columns they carry (a row's own cell before its key's; cells
/// the table has no column for and unchanged TOASTed values left out), in table column order,
/// and by whether they are creates.
fn write_shapes<'a>(target: &TargetTable, writes: &[&'a PendingChange]) -> Vec<Shape> {
    let positions: HashMap<&str, usize> = target
        .columns
        .iter()
        .enumerate()
        .map(|(i, (name, _))| (name.as_str(), i))
        .collect();
    // Rows of a batch carry their columns in the same order: try the last row's position of
    // a cell (and its name, mostly the same shared one) before hashing its name.
    let mut hints: Vec<(usize, &Arc<str>)> = Vec::new();
    let mut slots: Vec<Option<&'a Cell>> = vec![None; target.columns.len()];
    let mut present: Vec<usize> = Vec::new();
    // Per shape: its columns and their cells, column-major.
    type Cells<'a> = Vec<Option<&'a Cell>>;
    let mut shapes: Vec<(Vec<usize>, bool, Vec<Cells<'a>>)> = Vec::new();
    let mut by_columns: HashMap<(Vec<usize>, bool), usize> = HashMap::new();
    for (row, write) in writes.iter().enumerate() {
        let Change::Write(cells) = &write.change else {
            continue;
        };
        slots.fill(None);
        for (at, column) in cells.iter().chain(&write.key).enumerate() {
            let hinted = hints.get(at).and_then(|&(i, name)| {
                (Arc::ptr_eq(name, &column.name) || *name == column.name).then_some(i)
            });
            if let Some(index) = hinted {
                if slots[index].is_none() {
                    slots[index] = Some(&column.cell);
                }
                continue;
            }
            let Some(index) = positions.get(&*column.name).copied() else {
                continue;
            };
            if at < hints.len() {
                hints[at] = (index, &column.name);
            } else {
                hints.push((index, &column.name));
            }
            // A row's own cell wins over its key's.
            if slots[index].is_none() {
                slots[index] = Some(&column.cell);
            }
        }
        present.clear();
        present.extend(
            slots
                .iter()
                .enumerate()
                .filter(|(_, cell)| cell.is_some_and(|c| *c != Cell::Unchanged))
                .map(|(i, _)| i),
        );
        let key = (present, write.created);
        let shape = match by_columns.get(&key) {
            Some(&shape) => shape,
            None => {
                // The first shape is nearly always the only one: room for every row left.
                let room = if shapes.is_empty() {
                    writes.len() - row
                } else {
                    0
                };
                by_columns.insert(key.clone(), shapes.len());
                shapes.push((
                    key.0.clone(),
                    key.1,
                    (0..key.0.len()).map(|_| Vec::with_capacity(room)).collect(),
                ));
                shapes.len() - 1
            }
        };
        present = key.0;
        let columns = &mut shapes[shape].2;
        for (cells, &i) in columns.iter_mut().zip(&present) {
            cells.push(slots[i]);
        }
    }
    shapes
        .into_iter()
        .map(|(present, created, columns)| {
            let arrays = present
                .iter()
                .zip(&columns)
                .map(|(&i, cells)| {
                    ColumnArray::new(Binding::for_column(&target.columns[i].1), cells)
                })
                .collect();
            Shape {
                present,
                created,
                arrays,
            }
        })
        .collect()
}

/// `(SELECT unnest($1::int8[]) AS c0, unnest($2::text[]) AS c1, …) AS u`: the arrays as rows.
fn unnest(arrays: &[ColumnArray]) -> String {
    let columns: Vec<String> = arrays
        .iter()
        .enumerate()
        .map(|(i, array)| format!("unnest(${}::{}[]) AS c{i}", i + 1, array.binding.sql_type()))
        .collect();
    format!("(SELECT {}) AS u", columns.join(", "))
}

/// The named columns with their catalog types, or which one the table lacks.
fn typed_columns<'a>(
    table: &TableName,
    target: &'a TargetTable,
    names: &[&'a str],
) -> Result<Vec<(&'a str, &'a str)>, Error> {
    names
        .iter()
        .map(|name| {
            target
                .column_type(name)
                .map(|ty| (*name, ty))
                .ok_or_else(|| Error::Table {
                    table: table.to_string(),
                    message: format!("has no column {name:?}"),
                })
        })
        .collect()
}

/// How a column's values are bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Binding {
    /// `text[]`, cast in SQL to the column's type: any value.
    Text,
    Int8,
    Int4,
    Int2,
    Numeric,
    Date,
    Timestamp,
    TimestampTz,
}

/// Microseconds from 1970-01-01 to PostgreSQL's epoch, 2000-01-01.
const POSTGRES_EPOCH_MICROS: i64 = 946_684_800_000_000;
/// Days from 1970-01-01 to 2000-01-01.
const POSTGRES_EPOCH_DAYS: i64 = 10_957;

impl Binding {
    /// The binding a column of catalog type `ty` (as `format_type` writes it) takes when every
    /// value fits it.
    fn for_column(ty: &str) -> Self {
        let timestamp = ty.starts_with("timestamp");
        match ty {
            "bigint" => Self::Int8,
            "integer" => Self::Int4,
            "smallint" => Self::Int2,
            "date" => Self::Date,
            // `numeric` and `numeric(p,s)`: the cast to the column's type applies its typmod.
            _ if ty == "numeric" || ty.starts_with("numeric(") => Self::Numeric,
            _ if timestamp && ty.ends_with("without time zone") => Self::Timestamp,
            _ if timestamp && ty.ends_with("with time zone") => Self::TimestampTz,
            _ => Self::Text,
        }
    }

    /// Whether `cell` can be bound this way (`None` is NULL).
    fn fits(self, cell: Option<&Cell>) -> bool {
        match (self, cell) {
            (Self::Text, _) | (_, None | Some(Cell::Null | Cell::Unchanged)) => true,
            (Self::Int8, Some(Cell::Integer(_))) => true,
            (Self::Int4, Some(Cell::Integer(i))) => i32::try_from(*i).is_ok(),
            (Self::Int2, Some(Cell::Integer(i))) => i16::try_from(*i).is_ok(),
            (Self::Numeric, Some(Cell::Decimal { .. })) => true,
            (Self::Date, Some(Cell::Date(_))) => true,
            (Self::Timestamp, Some(Cell::Timestamp(_))) => true,
            (Self::TimestampTz, Some(Cell::Zoned { .. })) => true,
            _ => false,
        }
    }

    fn sql_type(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Int8 => "int8",
            Self::Int4 => "int4",
            Self::Int2 => "int2",
            Self::Numeric => "numeric",
            Self::Date => "date",
            Self::Timestamp => "timestamp",
            Self::TimestampTz => "timestamptz",
        }
    }

    fn element_type(self) -> Type {
        match self {
            Self::Text => Type::TEXT,
            Self::Int8 => Type::INT8,
            Self::Int4 => Type::INT4,
            Self::Int2 => Type::INT2,
            Self::Numeric => Type::NUMERIC,
            Self::Date => Type::DATE,
            Self::Timestamp => Type::TIMESTAMP,
            Self::TimestampTz => Type::TIMESTAMPTZ,
        }
    }

    fn array_type(self) -> Type {
        match self {
            Self::Text => Type::TEXT_ARRAY,
            Self::Int8 => Type::INT8_ARRAY,
            Self::Int4 => Type::INT4_ARRAY,
            Self::Int2 => Type::INT2_ARRAY,
            Self::Numeric => Type::NUMERIC_ARRAY,
            Self::Date => Type::DATE_ARRAY,
            Self::Timestamp => Type::TIMESTAMP_ARRAY,
            Self::TimestampTz => Type::TIMESTAMPTZ_ARRAY,
        }
    }
}

/// One column's values as an array parameter, encoded when built (PostgreSQL's binary array
/// format, without its header): binding it copies one buffer, reserved once, rather than
/// growing the connection's buffer value by value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ColumnArray {
    binding: Binding,
    /// Per element: its length as a big-endian `i32` (-1 for NULL), then its bytes.
    elements: Vec<u8>,
    len: usize,
    has_nulls: bool,
}

impl ColumnArray {
    /// The cells (`None` and unchanged TOASTed values are NULL) bound as `wanted` when all of
    /// them fit it, else as text.
    fn new(wanted: Binding, cells: &[Option<&Cell>]) -> Self {
        let binding = if cells.iter().all(|&c| wanted.fits(c)) {
            wanted
        } else {
            Binding::Text
        };
        let mut array = Self {
            binding,
            elements: Vec::with_capacity(cells.len() * 12),
            len: 0,
            has_nulls: false,
        };
        for &cell in cells {
            array.push(cell);
        }
        array
    }

    fn push(&mut self, cell: Option<&Cell>) {
        self.len += 1;
        let mut fixed = |bytes: &[u8]| {
            // A fixed-width value: 2, 4 or 8 bytes.
            self.elements
                .extend_from_slice(&(bytes.len() as i32).to_be_bytes());
            self.elements.extend_from_slice(bytes);
        };
        match (self.binding, cell) {
            (_, None | Some(Cell::Null | Cell::Unchanged)) => {
                self.elements.extend_from_slice(&(-1i32).to_be_bytes());
                self.has_nulls = true;
            }
            (Binding::Int8, Some(Cell::Integer(i))) => fixed(&i.to_be_bytes()),
            (Binding::Int4, Some(Cell::Integer(i))) => fixed(&(*i as i32).to_be_bytes()),
            (Binding::Int2, Some(Cell::Integer(i))) => fixed(&(*i as i16).to_be_bytes()),
            (Binding::Numeric, Some(Cell::Decimal { unscaled, scale })) => {
                let start = self.elements.len();
                self.elements.extend_from_slice(&0i32.to_be_bytes());
                encode_numeric(*unscaled, *scale, &mut self.elements);
                let length = (self.elements.len() - start - 4) as i32;
                self.elements[start..start + 4].copy_from_slice(&length.to_be_bytes());
            }
            (Binding::Date, Some(Cell::Date(date))) => {
                let days = i64::from(date.num_days_from_ce()) - EPOCH_DAYS_FROM_CE;
                // Dates PostgreSQL can hold fit; others fail there as their text would.
                fixed(&((days - POSTGRES_EPOCH_DAYS) as i32).to_be_bytes());
            }
            (Binding::Timestamp, Some(Cell::Timestamp(utc)))
            | (Binding::TimestampTz, Some(Cell::Zoned { utc, .. })) => {
                fixed(&(utc.and_utc().timestamp_micros() - POSTGRES_EPOCH_MICROS).to_be_bytes());
            }
            (_, Some(cell)) => {
                let text = cell.text().unwrap_or_default();
                // Longer than i32::MAX fails in `to_sql`, as PostgreSQL would refuse it anyway.
                let length = i32::try_from(text.len()).unwrap_or(i32::MAX);
                self.elements.extend_from_slice(&length.to_be_bytes());
                self.elements.extend_from_slice(text.as_bytes());
            }
        }
    }

    #[cfg(test)]
    fn from_texts(values: &[Option<&str>]) -> Self {
        let cells: Vec<Option<Cell>> = values
            .iter()
            .map(|v| v.map(|t| Cell::Text(t.to_owned())))
            .collect();
        let refs: Vec<Option<&Cell>> = cells.iter().map(Option::as_ref).collect();
        Self::new(Binding::Text, &refs)
    }
}

/// PostgreSQL's binary `numeric` of `unscaled` × 10^-`scale` (scale ≤ 38): base-10000 digits
/// around the decimal point, without leading or trailing zero digits, and the display scale.
fn encode_numeric(unscaled: i128, scale: u32, out: &mut Vec<u8>) {
    let mut number = itoa::Buffer::new();
    let digits = number.format(unscaled.unsigned_abs()).as_bytes();
    let scale = scale as usize;
    let (whole, fraction): (&[u8], &[u8]) = if digits.len() > scale {
        digits.split_at(digits.len() - scale)
    } else {
        (&[], digits)
    };
    // The decimal digits in groups of four aligned on the point (whole part padded on the
    // left, fraction on the right): at most 3 + 39 + 38 + 3 of them.
    let mut padded = [b'0'; 96];
    let point = whole.len().div_ceil(4) * 4;
    padded[point - whole.len()..point].copy_from_slice(whole);
    let fraction_start = point + (scale - fraction.len());
    padded[fraction_start..fraction_start + fraction.len()].copy_from_slice(fraction);
    let end = point + scale.div_ceil(4) * 4;
    let mut groups = [0i16; 24];
    let mut count = 0;
    for chunk in padded[..end].chunks(4) {
        groups[count] = chunk
            .iter()
            .fold(0i16, |n, digit| n * 10 + i16::from(digit - b'0'));
        count += 1;
    }
    let leading = groups[..count].iter().take_while(|&&g| g == 0).count();
    let trailing = groups[leading..count]
        .iter()
        .rev()
        .take_while(|&&g| g == 0)
        .count();
    let significant = &groups[leading..count - trailing];
    let (weight, sign) = if significant.is_empty() {
        (0i16, 0u16)
    } else {
        let weight = (point / 4) as i16 - 1 - leading as i16;
        (weight, if unscaled < 0 { 0x4000 } else { 0 })
    };
    out.extend_from_slice(&(significant.len() as i16).to_be_bytes());
    out.extend_from_slice(&weight.to_be_bytes());
    out.extend_from_slice(&sign.to_be_bytes());
    out.extend_from_slice(&(scale as i16).to_be_bytes());
    for group in significant {
        out.extend_from_slice(&group.to_be_bytes());
    }
}

/// `NaiveDate::num_days_from_ce` of 1970-01-01.
const EPOCH_DAYS_FROM_CE: i64 = 719_163;

impl ToSql for ColumnArray {
    fn to_sql(
        &self,
        _: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        let len = i32::try_from(self.len).map_err(|_| "too many array elements")?;
        if self.elements.len() > i32::MAX as usize {
            return Err("array too large for one parameter".into());
        }
        out.reserve(20 + self.elements.len());
        out.put_i32(1); // dimensions
        out.put_i32(i32::from(self.has_nulls));
        out.put_u32(self.binding.element_type().oid());
        out.put_i32(len);
        out.put_i32(1); // lower bound
        out.extend_from_slice(&self.elements);
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        [
            Binding::Text,
            Binding::Int8,
            Binding::Int4,
            Binding::Int2,
            Binding::Numeric,
            Binding::Date,
            Binding::Timestamp,
            Binding::TimestampTz,
        ]
        .iter()
        .any(|b| b.array_type() == *ty)
    }

    to_sql_checked!();
}

/// Runs `sql` with one array parameter per column.
async fn execute_columns(
    transaction: &Transaction<'_>,
    statement: &Statement,
    arrays: &[ColumnArray],
    table: &TableName,
) -> Result<u64, Error> {
    let params: Vec<&(dyn ToSql + Sync)> =
        arrays.iter().map(|a| a as &(dyn ToSql + Sync)).collect();
    transaction
        .execute(statement, &params)
        .await
        .map_err(Error::database(format!("writing to {table}")))
}

/// The shape of `table`, or `None` when it does not exist.
async fn read_table(
    transaction: &Transaction<'_>,
    table: &TableName,
) -> Result<Option<TargetTable>, Error> {
    let qualified = table.to_string();
    let rows = transaction
        .query(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod)
               FROM pg_attribute a
              WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped
              ORDER BY a.attnum",
            &[&qualified],
        )
        .await
        .map_err(Error::database(format!("reading the columns of {table}")))?;
    if rows.is_empty() {
        return Ok(None);
    }
    Ok(Some(TargetTable {
        columns: rows.iter().map(|r| (r.get(0), r.get(1))).collect(),
    }))
}

/// Keeps the last change per key (PostgreSQL rejects an upsert touching one row twice); an
/// update with unchanged TOASTed values takes them from the change it replaces.
pub(crate) fn reduce(changes: Vec<(String, PendingChange)>) -> Vec<PendingChange> {
    // foldhash: SipHash of every record's key identity was a visible share of the decoder.
    let mut index: foldhash::HashMap<String, usize> =
        HashMap::with_capacity_and_hasher(changes.len(), foldhash::fast::RandomState::default());
    let mut kept: Vec<PendingChange> = Vec::with_capacity(changes.len());
    for (identity, mut change) in changes {
        match index.get(&identity) {
            Some(&at) => {
                if let (Change::Write(newer), Change::Write(older)) =
                    (&mut change.change, &kept[at].change)
                {
                    for column in newer.iter_mut() {
                        if column.cell == Cell::Unchanged
                            && let Some(previous) = older.iter().find(|c| c.name == column.name)
                        {
                            column.cell = previous.cell.clone();
                        }
                    }
                }
                // Whether the row existed before the batch is its first change's to say.
                change.created = kept[at].created;
                kept[at] = change;
            }
            None => {
                index.insert(identity, kept.len());
                kept.push(change);
            }
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(name: &str, cell: Cell) -> ColumnValue {
        ColumnValue {
            name: name.into(),
            schema: None,
            cell,
        }
    }

    fn write(id: &str, note: Cell) -> (String, PendingChange) {
        (
            id.to_owned(),
            PendingChange {
                key: vec![column("id", Cell::Text(id.to_owned()))],
                change: Change::Write(vec![
                    column("id", Cell::Text(id.to_owned())),
                    column("note", note),
                ]),
                origin: 0,
                created: false,
            },
        )
    }

    #[test]
    fn reduction_keeps_the_last_change_and_fills_unchanged_values() {
        let delete = (
            "2".to_owned(),
            PendingChange {
                key: vec![column("id", Cell::Text("2".into()))],
                change: Change::Delete,
                origin: 3,
                created: false,
            },
        );
        let reduced = reduce(vec![
            write("1", Cell::Text("a".into())),
            write("2", Cell::Text("b".into())),
            write("1", Cell::Unchanged),
            delete,
        ]);
        assert_eq!(reduced.len(), 2);
        let Change::Write(first) = &reduced[0].change else {
            panic!("a write")
        };
        assert_eq!(first[1].cell, Cell::Text("a".into()));
        assert_eq!(reduced[1].change, Change::Delete);
    }

    #[test]
    fn a_key_counts_as_created_when_its_first_change_in_the_batch_was_a_create() {
        let created = |(id, mut change): (String, PendingChange)| {
            change.created = true;
            (id, change)
        };
        let reduced = reduce(vec![
            // Created, then updated: the row is still new to the target.
            created(write("1", Cell::Text("a".into()))),
            write("1", Cell::Text("b".into())),
            // Updated, then deleted and created again: the target has the row.
            write("2", Cell::Text("c".into())),
            created(write("2", Cell::Text("d".into()))),
            created(write("3", Cell::Text("e".into()))),
        ]);
        let flags: Vec<bool> = reduced.iter().map(|c| c.created).collect();
        assert_eq!(flags, [true, false, true]);
        let Change::Write(first) = &reduced[0].change else {
            panic!("a write")
        };
        assert_eq!(
            first[1].cell,
            Cell::Text("b".into()),
            "the last change's values"
        );
    }

    #[test]
    fn creates_are_written_apart_from_other_writes_and_without_on_conflict() {
        let target = TargetTable {
            columns: vec![
                ("id".into(), "bigint".into()),
                ("note".into(), "text".into()),
            ],
        };
        let (_, mut created) = write("1", Cell::Text("a".into()));
        created.created = true;
        let (_, updated) = write("2", Cell::Text("b".into()));
        let (_, created_too) = {
            let (id, mut change) = write("3", Cell::Text("c".into()));
            change.created = true;
            (id, change)
        };
        let shapes = write_shapes(&target, &[&created, &updated, &created_too]);
        let summary: Vec<(bool, usize)> = shapes
            .iter()
            .map(|s| (s.created, s.arrays[0].len))
            .collect();
        assert_eq!(summary, [(true, 2), (false, 1)]);
        let table = TableName {
            schema: "public".into(),
            name: "t".into(),
        };
        let columns = [("id", "bigint"), ("note", "text")];
        let plain = write_sql(
            InsertMode::Insert,
            &table,
            &columns,
            &shapes[0].arrays,
            &["id"],
        )
        .expect("sql")
        .expect("a statement");
        assert!(!plain.contains("ON CONFLICT"), "{plain}");
        let upsert = write_sql(
            InsertMode::Upsert,
            &table,
            &columns,
            &shapes[1].arrays,
            &["id"],
        )
        .expect("sql")
        .expect("a statement");
        assert!(
            upsert.ends_with(r#"ON CONFLICT ("id") DO UPDATE SET "note" = EXCLUDED."note""#),
            "{upsert}"
        );
    }

    #[test]
    fn writes_are_grouped_by_the_columns_they_carry() {
        let target = TargetTable {
            columns: vec![
                ("id".into(), "bigint".into()),
                ("note".into(), "text".into()),
                ("n".into(), "integer".into()),
            ],
        };
        let change = |cells: Vec<ColumnValue>, id: &str| PendingChange {
            key: vec![column("id", Cell::Text(id.into()))],
            change: Change::Write(cells),
            origin: 0,
            created: false,
        };
        let changes = [
            change(
                vec![
                    column("id", Cell::Text("1".into())),
                    column("note", Cell::Text("a".into())),
                    column("n", Cell::Null),
                ],
                "1",
            ),
            // Another order, a column the table lacks, and the key only in the key.
            change(
                vec![
                    column("n", Cell::Text("5".into())),
                    column("extra", Cell::Text("e".into())),
                    column("note", Cell::Text("b".into())),
                ],
                "2",
            ),
            // An unchanged TOASTed value is left out.
            change(
                vec![
                    column("id", Cell::Text("3".into())),
                    column("note", Cell::Unchanged),
                    column("n", Cell::Text("7".into())),
                ],
                "3",
            ),
        ];
        let writes: Vec<&PendingChange> = changes.iter().collect();
        let shapes = write_shapes(&target, &writes);
        assert_eq!(shapes.len(), 2);
        assert_eq!(shapes[0].present, [0, 1, 2]);
        assert_eq!(
            shapes[0].arrays,
            [
                ColumnArray::from_texts(&[Some("1"), Some("2")]),
                ColumnArray::from_texts(&[Some("a"), Some("b")]),
                ColumnArray::from_texts(&[None, Some("5")])
            ]
        );
        assert_eq!(shapes[1].present, [0, 2]);
        assert_eq!(
            shapes[1].arrays,
            [
                ColumnArray::from_texts(&[Some("3")]),
                ColumnArray::from_texts(&[Some("7")])
            ]
        );
    }

    fn encoded(array: &ColumnArray) -> BytesMut {
        let mut out = BytesMut::new();
        array
            .to_sql(&array.binding.array_type(), &mut out)
            .expect("encodes");
        out
    }

    fn theirs<T: ToSql>(values: Vec<T>, ty: &Type) -> BytesMut {
        let mut out = BytesMut::new();
        values.to_sql(ty, &mut out).expect("encodes");
        out
    }

    #[test]
    fn typed_cells_bind_in_binary_when_every_value_fits_the_column() {
        let integers = [
            Some(Cell::Integer(-3)),
            Some(Cell::Null),
            None,
            Some(Cell::Integer(1 << 40)),
        ];
        let refs: Vec<Option<&Cell>> = integers.iter().map(Option::as_ref).collect();
        let bigint = ColumnArray::new(Binding::for_column("bigint"), &refs);
        assert_eq!(bigint.binding, Binding::Int8);
        assert_eq!(
            encoded(&bigint),
            theirs(
                vec![Some(-3i64), None, None, Some(1 << 40)],
                &Type::INT8_ARRAY
            )
        );
        // 2^40 does not fit an integer column: the whole array goes as text, and PostgreSQL
        // reports the value out of range as it always did.
        let integer = ColumnArray::new(Binding::for_column("integer"), &refs);
        assert_eq!(integer.binding, Binding::Text);
        assert_eq!(
            encoded(&integer),
            theirs(
                vec![Some("-3"), None, None, Some("1099511627776")],
                &Type::TEXT_ARRAY
            )
        );
        let small = [Some(Cell::Integer(7)), Some(Cell::Integer(-9))];
        let refs: Vec<Option<&Cell>> = small.iter().map(Option::as_ref).collect();
        assert_eq!(
            encoded(&ColumnArray::new(Binding::for_column("smallint"), &refs)),
            theirs(vec![7i16, -9], &Type::INT2_ARRAY)
        );
        assert_eq!(
            encoded(&ColumnArray::new(Binding::for_column("integer"), &refs)),
            theirs(vec![7i32, -9], &Type::INT4_ARRAY)
        );
        // A text column takes the integers' text.
        assert_eq!(
            encoded(&ColumnArray::new(Binding::for_column("text"), &refs)),
            theirs(vec!["7", "-9"], &Type::TEXT_ARRAY)
        );
    }

    #[test]
    fn timestamps_and_dates_bind_as_microseconds_and_days_since_2000() {
        let at = |micros: i64| {
            chrono::DateTime::from_timestamp_micros(micros)
                .expect("in range")
                .naive_utc()
        };
        let system = |micros: i64| {
            std::time::UNIX_EPOCH + std::time::Duration::from_micros(micros.unsigned_abs())
        };
        let micros = [1_709_210_701_000_001_i64, 0, 946_684_800_000_000];
        let cells: Vec<Cell> = micros.iter().map(|&m| Cell::Timestamp(at(m))).collect();
        let refs: Vec<Option<&Cell>> = cells.iter().map(Some).collect();
        let array = ColumnArray::new(Binding::for_column("timestamp(6) without time zone"), &refs);
        assert_eq!(array.binding, Binding::Timestamp);
        let expected: Vec<_> = micros.iter().map(|&m| system(m)).collect();
        assert_eq!(
            encoded(&array),
            theirs(expected.clone(), &Type::TIMESTAMP_ARRAY)
        );
        // A wall-clock timestamp never goes to a timestamptz column in binary: its text is
        // read in the session's time zone, as before.
        let array = ColumnArray::new(Binding::for_column("timestamp with time zone"), &refs);
        assert_eq!(array.binding, Binding::Text);

        let zoned: Vec<Cell> = micros
            .iter()
            .map(|&m| Cell::Zoned {
                utc: at(m),
                text: "original".to_owned(),
            })
            .collect();
        let refs: Vec<Option<&Cell>> = zoned.iter().map(Some).collect();
        let array = ColumnArray::new(Binding::for_column("timestamp with time zone"), &refs);
        assert_eq!(encoded(&array), theirs(expected, &Type::TIMESTAMPTZ_ARRAY));
        // Any other column receives the text it was read from.
        let array = ColumnArray::new(Binding::for_column("text"), &refs);
        assert_eq!(
            encoded(&array),
            theirs(vec!["original"; 3], &Type::TEXT_ARRAY)
        );

        let day = |y, m, d| Cell::Date(chrono::NaiveDate::from_ymd_opt(y, m, d).expect("a date"));
        let dates = [day(1999, 12, 31), day(2000, 1, 1), day(2000, 3, 1)];
        let refs: Vec<Option<&Cell>> = dates.iter().map(Some).collect();
        let array = ColumnArray::new(Binding::for_column("date"), &refs);
        let mut expected = BytesMut::new();
        expected.put_i32(1);
        expected.put_i32(0);
        expected.put_u32(Type::DATE.oid());
        expected.put_i32(3);
        expected.put_i32(1);
        for days in [-1i32, 0, 60] {
            expected.put_i32(4);
            expected.put_i32(days);
        }
        assert_eq!(encoded(&array), expected);
    }

    #[test]
    fn only_known_tables_with_every_column_are_encoded_ahead() {
        let table = |name: &str| TableName {
            schema: "public".into(),
            name: name.into(),
        };
        let known = KnownTables::default();
        known.write().expect("not poisoned").insert(
            table("a"),
            TargetTable {
                columns: vec![
                    ("id".into(), "bigint".into()),
                    ("note".into(), "text".into()),
                ],
            },
        );
        let write = |id: i64, cells: Vec<ColumnValue>| PendingChange {
            key: vec![column("id", Cell::Integer(id))],
            change: Change::Write(cells),
            origin: 0,
            created: false,
        };
        let delete = PendingChange {
            key: vec![column("id", Cell::Integer(9))],
            change: Change::Delete,
            origin: 1,
            created: false,
        };
        let changes = BTreeMap::from([
            (
                table("a"),
                vec![
                    write(
                        1,
                        vec![column("id", Cell::Integer(1)), column("note", Cell::Null)],
                    ),
                    delete.clone(),
                ],
            ),
            // Not known yet: the writer reads or creates it first.
            (
                table("b"),
                vec![write(2, vec![column("id", Cell::Integer(2))])],
            ),
        ]);
        let encoded = encode_ahead(&known, &changes);
        assert_eq!(encoded.keys().collect::<Vec<_>>(), [&table("a")]);
        let a = &encoded[&table("a")];
        assert_eq!(a.deletes.len(), 1);
        assert_eq!(a.deletes[0].binding, Binding::Int8);
        assert_eq!(a.writes.len(), 1);
        assert_eq!(a.writes[0].present, [0, 1]);

        // A column the table lacks is the writer's to add before anything is encoded.
        let changes = BTreeMap::from([(
            table("a"),
            vec![write(
                3,
                vec![column("id", Cell::Integer(3)), column("new", Cell::Null)],
            )],
        )]);
        assert!(encode_ahead(&known, &changes).is_empty());
    }

    #[test]
    fn decimals_encode_as_postgres_sends_numerics() {
        // `SELECT encode(numeric_send('<text>'::numeric), 'hex')` on PostgreSQL 15.
        let cases: [(i128, u32, &str); 9] = [
            (1250, 2, "0002000000000002000c1388"),
            (1, 4, "0001ffff000000040001"),
            (100_000, 0, "0001000100000000000a"),
            (-100, 2, "00010000400000020001"),
            (0, 2, "0000000000000002"),
            (
                123_456_789_123_456_789,
                9,
                "0006000200000009000109291a8504d2162e2328",
            ),
            (-1, 36, "0001fff7400000240001"),
            (
                i128::MAX,
                0,
                "000a00090000000000aa0583209a01d5090d0c601c871bf620da165f",
            ),
            (
                i128::MIN,
                38,
                "000b00004000002600011b66049f11fc1b0b06c31ad9017316fc04210af0",
            ),
        ];
        for (unscaled, scale, expected) in cases {
            let mut out = Vec::new();
            encode_numeric(unscaled, scale, &mut out);
            let hex: String = out.iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(hex, expected, "{unscaled} at scale {scale}");
        }
        // In an array: each element framed by its length.
        let cells = [Some(Cell::Decimal {
            unscaled: 1250,
            scale: 2,
        })];
        let refs: Vec<Option<&Cell>> = cells.iter().map(Option::as_ref).collect();
        let array = ColumnArray::new(Binding::for_column("numeric(12,2)"), &refs);
        assert_eq!(array.binding, Binding::Numeric);
        assert_eq!(
            array.elements,
            [
                &12i32.to_be_bytes()[..],
                &[0, 2, 0, 0, 0, 0, 0, 2, 0, 12, 0x13, 0x88]
            ]
            .concat()
        );
        // A text column takes the decimal's text.
        let array = ColumnArray::new(Binding::for_column("text"), &refs);
        assert_eq!(array, ColumnArray::from_texts(&[Some("12.50")]));
    }

    #[test]
    fn text_arrays_encode_as_postgres_binary_arrays() {
        let values = [Some("ab"), None, Some("")];
        let mut ours = BytesMut::new();
        ColumnArray::from_texts(&values)
            .to_sql(&Type::TEXT_ARRAY, &mut ours)
            .expect("encodes");
        let mut theirs = BytesMut::new();
        values
            .to_vec()
            .to_sql(&Type::TEXT_ARRAY, &mut theirs)
            .expect("encodes");
        assert_eq!(ours, theirs);
    }

    #[test]
    fn table_names_are_quoted() {
        let table = TableName {
            schema: "My Schema".into(),
            name: "odd \"table\"".into(),
        };
        assert_eq!(table.to_string(), r#""My Schema"."odd ""table""""#);
        let arrays = [
            ColumnArray::new(Binding::Int8, &[]),
            ColumnArray::new(Binding::Text, &[]),
        ];
        assert_eq!(
            unnest(&arrays),
            "(SELECT unnest($1::int8[]) AS c0, unnest($2::text[]) AS c1) AS u"
        );
    }
}
