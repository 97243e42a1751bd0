//! The relation cache: pgoutput's Relation messages, completed from the catalog (nullability,
//! array element types, enum labels, domain bases), become table schemas; tuples become rows.
//!
//! A Relation message arrives before a table's first change in each replication session and
//! again after every change of its shape, so the cache always describes the rows that follow.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use tokio_postgres::Client;
use tracing::warn;

use super::{
    Error,
    database::{self, TypeCache},
    pgoutput::{Relation, Tuple, TupleValue},
    types::{self, DecodeOptions},
};
use crate::{
    config::TablePatterns,
    event::{Column, Datum, Lsn, ReplicaIdentity, Row, TableId, TableSchema, TypeKind},
};

/// A relation as the source needs it.
#[derive(Debug, Clone)]
pub struct CachedRelation {
    pub schema: Arc<TableSchema>,
    /// For each schema column, its position in the relation's tuples (filtered columns are
    /// left out of the schema).
    projection: Arc<[usize]>,
    /// Whether the include/exclude lists select this table.
    pub captured: bool,
}

#[derive(Debug, Default)]
pub struct RelationCache {
    relations: HashMap<u32, CachedRelation>,
    types: TypeCache,
    warned_unknown_types: HashSet<u32>,
}

impl RelationCache {
    pub async fn apply(
        &mut self,
        client: &Client,
        relation: &Relation,
        patterns: &TablePatterns,
    ) -> Result<&CachedRelation, Error> {
        let id = TableId::new(&relation.namespace, &relation.name);
        let captured = patterns.captures(&id);
        let facts = database::column_facts(client, relation.relation_id).await?;
        let mut columns = Vec::new();
        let mut projection = Vec::new();
        for (position, column) in relation.columns.iter().enumerate() {
            // Under REPLICA IDENTITY FULL every column is flagged as identity; the event key is
            // still the primary key, as in Debezium.
            let part_of_key = match relation.replica_identity {
                ReplicaIdentity::Full => facts.get(&column.name).is_some_and(|f| f.in_primary_key),
                _ => column.part_of_key,
            };
            if !part_of_key && !patterns.captures_column(&id, &column.name) {
                continue;
            }
            let (pg_type, domain_modifier) = self.types.resolve(client, column.type_oid).await?;
            if matches!(pg_type.kind, TypeKind::Unknown)
                && self.warned_unknown_types.insert(pg_type.oid)
            {
                warn!(
                    table = %id,
                    column = %column.name,
                    type_name = %pg_type.name,
                    "unknown column type: values are passed on as text"
                );
            }
            // A domain column reports -1; numeric(10,2) and friends live on the domain.
            let type_modifier =
                if column.type_modifier == -1 && matches!(pg_type.kind, TypeKind::Domain(_)) {
                    domain_modifier
                } else {
                    column.type_modifier
                };
            let not_null = facts.get(&column.name).is_some_and(|f| f.not_null);
            columns.push(Column {
                name: column.name.clone(),
                pg_type,
                type_modifier,
                part_of_key,
                optional: !(not_null || part_of_key),
            });
            projection.push(position);
        }
        let schema = Arc::new(TableSchema {
            relation_id: relation.relation_id,
            id,
            replica_identity: relation.replica_identity,
            columns,
        });
        self.relations.insert(
            relation.relation_id,
            CachedRelation {
                schema,
                projection: projection.into(),
                captured,
            },
        );
        Ok(&self.relations[&relation.relation_id])
    }

    pub fn get(&self, relation_id: u32) -> Option<&CachedRelation> {
        self.relations.get(&relation_id)
    }
}

impl CachedRelation {
    /// Decodes a tuple into a row of this relation's schema.
    pub fn row(&self, tuple: &Tuple<'_>, lsn: Lsn, options: &DecodeOptions) -> Result<Row, Error> {
        let values = tuple.values();
        let mut row = Vec::with_capacity(self.projection.len());
        for (column, &position) in self.schema.columns.iter().zip(self.projection.iter()) {
            let value_error = |source| Error::Value {
                table: self.schema.id.to_string(),
                column: column.name.clone(),
                lsn,
                source: Box::new(source),
            };
            let datum = match values.get(position) {
                None | Some(TupleValue::Null) => Datum::Null,
                Some(TupleValue::Unchanged) => Datum::Unchanged,
                Some(TupleValue::Text(bytes)) => {
                    let text = std::str::from_utf8(bytes).map_err(|_| Error::NotUtf8 {
                        table: self.schema.id.to_string(),
                        column: column.name.clone(),
                        lsn,
                    })?;
                    Datum::Value(
                        types::decode_text(&column.pg_type, column.type_modifier, text, options)
                            .map_err(value_error)?,
                    )
                }
                // A snapshot's binary COPY; pgoutput sends binary only when asked, which this
                // source never does.
                Some(TupleValue::Binary(bytes)) => {
                    Datum::Value(types::decode_binary(&column.pg_type, bytes).map_err(value_error)?)
                }
            };
            row.push(datum);
        }
        Ok(Row(row))
    }

    /// True when the tuple has as many columns as the relation announced.
    pub fn fits(&self, tuple: &Tuple<'_>) -> bool {
        self.projection
            .last()
            .is_none_or(|&last| last < tuple.values().len())
    }
}
