//! The pgoutput decoder against the real server: every protocol 1 message kind a pgoutput slot
//! produces for INSERT, UPDATE (with and without a key change, with unchanged TOAST), DELETE,
//! TRUNCATE and `pg_logical_emit_message`, under REPLICA IDENTITY DEFAULT and FULL.

use tributary::{
    event::{Lsn, ReplicaIdentity},
    source::postgres::pgoutput::{
        self, Begin, Commit, Message, OldTuple, Relation, RelationColumn, TupleValue,
    },
};

use crate::support::{postgres::TestDatabase, unique_name};

const INT4: u32 = 23;
const TEXT: u32 = 25;

/// One row of `pg_logical_slot_peek_binary_changes`.
struct SlotRow {
    lsn: Lsn,
    xid: u32,
    data: Vec<u8>,
}

/// One decoded transaction: its Begin, the messages inside, its Commit, and the slot's row LSN
/// of the Commit.
struct Transaction<'a> {
    begin: Begin,
    messages: Vec<Message<'a>>,
    commit: Commit,
    commit_row_lsn: Lsn,
}

/// Groups decoded messages into transactions; messages outside any transaction are returned
/// with the index of the transaction they precede.
fn transactions<'a>(rows: &'a [SlotRow]) -> (Vec<Transaction<'a>>, Vec<(usize, Message<'a>)>) {
    let mut done = Vec::new();
    let mut outside = Vec::new();
    let mut open: Option<(Begin, Vec<Message<'a>>)> = None;
    for (index, row) in rows.iter().enumerate() {
        let message = pgoutput::decode(&row.data)
            .unwrap_or_else(|err| panic!("slot row {index} at {}: {err}", row.lsn));
        match (message, open.take()) {
            (Message::Begin(begin), None) => {
                assert_eq!(
                    begin.xid, row.xid,
                    "Begin xid matches the slot's xid column"
                );
                open = Some((begin, Vec::new()));
            }
            (Message::Begin(_), Some(_)) => panic!("slot row {index}: Begin inside a transaction"),
            (Message::Commit(commit), Some((begin, messages))) => done.push(Transaction {
                begin,
                messages,
                commit,
                commit_row_lsn: row.lsn,
            }),
            (Message::Commit(_), None) => panic!("slot row {index}: Commit without Begin"),
            (other, Some((begin, mut messages))) => {
                messages.push(other);
                open = Some((begin, messages));
            }
            (other, None) => outside.push((done.len(), other)),
        }
    }
    assert!(open.is_none(), "the last transaction has no Commit");
    (done, outside)
}

/// The messages of a transaction without Relation and Type messages, whose placement depends on
/// the server's relation cache.
fn changes<'t, 'a>(transaction: &'t Transaction<'a>) -> Vec<&'t Message<'a>> {
    transaction
        .messages
        .iter()
        .filter(|m| !matches!(m, Message::Relation(_) | Message::Type { .. }))
        .collect()
}

fn column(name: &str, part_of_key: bool, type_oid: u32) -> RelationColumn {
    RelationColumn {
        part_of_key,
        name: name.to_owned(),
        type_oid,
        type_modifier: -1,
    }
}

#[tokio::test]
async fn decodes_every_message_kind_from_a_pgoutput_slot() {
    let db = TestDatabase::create().await;
    let client = db.client();
    client
        .batch_execute(
            "CREATE TYPE mood AS ENUM ('ok', 'sad');
             CREATE TABLE items (id int PRIMARY KEY, name text, note text);
             CREATE TABLE full_items (id int PRIMARY KEY, name text, note text, feeling mood);
             ALTER TABLE full_items REPLICA IDENTITY FULL;
             CREATE PUBLICATION pub FOR TABLE items, full_items;",
        )
        .await
        .expect("schema");
    let ids = client
        .query_one(
            "SELECT 'items'::regclass::oid, 'full_items'::regclass::oid, 'mood'::regtype::oid",
            &[],
        )
        .await
        .expect("oids");
    let (items_id, full_id, mood_oid): (u32, u32, u32) = (ids.get(0), ids.get(1), ids.get(2));

    let slot = unique_name("slot");
    client
        .execute(
            "SELECT pg_create_logical_replication_slot($1, 'pgoutput')",
            &[&slot],
        )
        .await
        .expect("a pgoutput slot can be created");

    // ~128 kB of hex digits: compressed it still exceeds the TOAST threshold, so it is stored
    // out of line and an UPDATE that does not touch it logs it as unchanged.
    let big_sql = "(SELECT string_agg(md5(i::text), '') FROM generate_series(1, 4000) i)";
    let big: String = client
        .query_one(&format!("SELECT {big_sql}"), &[])
        .await
        .expect("big value")
        .get(0);
    // One statement per transaction (autocommit), in this order.
    let statements = [
        "INSERT INTO items VALUES (1, 'alpha'), (2, NULL)".to_owned(),
        "UPDATE items SET name = 'beta' WHERE id = 1".to_owned(),
        "UPDATE items SET id = 10 WHERE id = 1".to_owned(),
        "DELETE FROM items WHERE id = 2".to_owned(),
        "INSERT INTO full_items VALUES (1, 'one', NULL, 'ok')".to_owned(),
        "UPDATE full_items SET name = 'uno' WHERE id = 1".to_owned(),
        "DELETE FROM full_items WHERE id = 1".to_owned(),
        format!("INSERT INTO items VALUES (3, 'toast', {big_sql})"),
        format!("INSERT INTO full_items VALUES (3, 'toast', {big_sql}, 'sad')"),
        "UPDATE items SET name = 'toast2' WHERE id = 3".to_owned(),
        "UPDATE full_items SET name = 'toast2' WHERE id = 3".to_owned(),
        "TRUNCATE full_items".to_owned(),
        "TRUNCATE items, full_items RESTART IDENTITY CASCADE".to_owned(),
    ];
    for statement in &statements {
        client
            .batch_execute(statement)
            .await
            .unwrap_or_else(|err| panic!("{statement}: {err}"));
    }
    // The first is not transactional: decoded at once, outside Begin/Commit. The second's commit
    // flushes the WAL, which the peek function needs to see the first.
    let mut emitted = Vec::new();
    for (transactional, prefix, content) in [(false, "np", "now"), (true, "p", "hello")] {
        let lsn: String = client
            .query_one(
                "SELECT pg_logical_emit_message($1, $2, $3)::text",
                &[&transactional, &prefix, &content],
            )
            .await
            .expect("pg_logical_emit_message")
            .get(0);
        emitted.push(lsn.parse::<Lsn>().expect("an LSN"));
    }

    let rows: Vec<SlotRow> = client
        .query(
            "SELECT lsn::text, xid::text, data FROM pg_logical_slot_peek_binary_changes($1, NULL,
               NULL, 'proto_version', '1', 'publication_names', 'pub', 'messages', 'true')",
            &[&slot],
        )
        .await
        .expect("the slot decodes")
        .iter()
        .map(|row| SlotRow {
            lsn: row.get::<_, String>(0).parse().expect("an LSN"),
            xid: row.get::<_, String>(1).parse().expect("an xid"),
            data: row.get(2),
        })
        .collect();
    let (txns, outside) = transactions(&rows);

    // Kinds per transaction, Relation and Type messages aside.
    let kinds: Vec<String> = txns
        .iter()
        .map(|t| {
            changes(t)
                .iter()
                .map(|m| char::from(m.kind().tag()))
                .collect()
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "II", "U", "U", "D", "I", "U", "D", "I", "I", "U", "U", "T", "T", "M"
        ],
        "one transaction per statement, in order"
    );

    // Positions: Begin announces the commit LSN, the Commit's end LSN is the slot position of
    // the Commit row, and transactions arrive in commit order.
    let mut previous_end = Lsn::ZERO;
    for (i, t) in txns.iter().enumerate() {
        assert_eq!(t.begin.final_lsn, t.commit.commit_lsn, "transaction {i}");
        assert_eq!(t.begin.commit_ts, t.commit.commit_ts, "transaction {i}");
        assert_eq!(t.commit.flags, 0, "transaction {i}");
        assert!(t.commit.commit_lsn < t.commit.end_lsn, "transaction {i}");
        assert_eq!(t.commit.end_lsn, t.commit_row_lsn, "transaction {i}");
        assert!(
            previous_end <= t.commit.commit_lsn,
            "transaction {i} is out of order"
        );
        previous_end = t.commit.end_lsn;
    }
    let commit_times: Vec<i64> = txns.iter().map(|t| t.commit.commit_ts).collect();
    assert!(
        commit_times.is_sorted(),
        "commit timestamps: {commit_times:?}"
    );

    // Relations: each described before its first change, with the columns as created.
    let relations: Vec<&Relation> = txns
        .iter()
        .flat_map(|t| &t.messages)
        .filter_map(|m| match m {
            Message::Relation(r) => Some(r),
            _ => None,
        })
        .collect();
    let items_relation = Relation {
        relation_id: items_id,
        namespace: "public".to_owned(),
        name: "items".to_owned(),
        replica_identity: ReplicaIdentity::Default,
        columns: vec![
            column("id", true, INT4),
            column("name", false, TEXT),
            column("note", false, TEXT),
        ],
    };
    // Under FULL every column is part of the identity.
    let full_relation = Relation {
        relation_id: full_id,
        namespace: "public".to_owned(),
        name: "full_items".to_owned(),
        replica_identity: ReplicaIdentity::Full,
        columns: vec![
            column("id", true, INT4),
            column("name", true, TEXT),
            column("note", true, TEXT),
            column("feeling", true, mood_oid),
        ],
    };
    assert_eq!(
        txns[0].messages.first(),
        Some(&Message::Relation(items_relation.clone()))
    );
    for relation in &relations {
        assert!(
            **relation == items_relation || **relation == full_relation,
            "unexpected relation {relation:?}"
        );
    }
    // The enum type is described before the first full_items Relation.
    assert_eq!(
        &txns[4].messages[..2],
        [
            Message::Type {
                type_oid: mood_oid,
                namespace: "public".to_owned(),
                name: "mood".to_owned(),
            },
            Message::Relation(full_relation.clone()),
        ]
    );

    let text = |s: &'static str| TupleValue::Text(s.as_bytes());
    let change = |txn: usize, n: usize| changes(&txns[txn])[n].clone();

    // INSERT: new tuples, NULL as 'n'.
    assert_eq!(
        change(0, 0),
        Message::Insert {
            relation_id: items_id,
            new: pgoutput::Tuple(vec![text("1"), text("alpha"), TupleValue::Null]),
        }
    );
    assert_eq!(
        change(0, 1),
        Message::Insert {
            relation_id: items_id,
            new: pgoutput::Tuple(vec![text("2"), TupleValue::Null, TupleValue::Null]),
        }
    );
    // UPDATE under DEFAULT without a key change: no old tuple.
    assert_eq!(
        change(1, 0),
        Message::Update {
            relation_id: items_id,
            old: None,
            new: pgoutput::Tuple(vec![text("1"), text("beta"), TupleValue::Null]),
        }
    );
    // A key change: the old key as 'K', non-key columns null.
    assert_eq!(
        change(2, 0),
        Message::Update {
            relation_id: items_id,
            old: Some(OldTuple::Key(pgoutput::Tuple(vec![
                text("1"),
                TupleValue::Null,
                TupleValue::Null,
            ]))),
            new: pgoutput::Tuple(vec![text("10"), text("beta"), TupleValue::Null]),
        }
    );
    assert_eq!(
        change(3, 0),
        Message::Delete {
            relation_id: items_id,
            old: OldTuple::Key(pgoutput::Tuple(vec![
                text("2"),
                TupleValue::Null,
                TupleValue::Null
            ])),
        }
    );
    // FULL: the whole old row as 'O'.
    assert_eq!(
        change(4, 0),
        Message::Insert {
            relation_id: full_id,
            new: pgoutput::Tuple(vec![text("1"), text("one"), TupleValue::Null, text("ok")]),
        }
    );
    assert_eq!(
        change(5, 0),
        Message::Update {
            relation_id: full_id,
            old: Some(OldTuple::Full(pgoutput::Tuple(vec![
                text("1"),
                text("one"),
                TupleValue::Null,
                text("ok"),
            ]))),
            new: pgoutput::Tuple(vec![text("1"), text("uno"), TupleValue::Null, text("ok")]),
        }
    );
    assert_eq!(
        change(6, 0),
        Message::Delete {
            relation_id: full_id,
            old: OldTuple::Full(pgoutput::Tuple(vec![
                text("1"),
                text("uno"),
                TupleValue::Null,
                text("ok"),
            ])),
        }
    );

    // TOAST: the insert carries the whole value ...
    let big_value = TupleValue::Text(big.as_bytes());
    assert_eq!(
        change(7, 0),
        Message::Insert {
            relation_id: items_id,
            new: pgoutput::Tuple(vec![text("3"), text("toast"), big_value]),
        }
    );
    assert_eq!(
        change(8, 0),
        Message::Insert {
            relation_id: full_id,
            new: pgoutput::Tuple(vec![text("3"), text("toast"), big_value, text("sad")]),
        }
    );
    // ... an update that leaves it alone marks it unchanged, with no old value under DEFAULT ...
    assert_eq!(
        change(9, 0),
        Message::Update {
            relation_id: items_id,
            old: None,
            new: pgoutput::Tuple(vec![text("3"), text("toast2"), TupleValue::Unchanged]),
        }
    );
    // ... and under FULL too, with the detoasted value in the old row.
    assert_eq!(
        change(10, 0),
        Message::Update {
            relation_id: full_id,
            old: Some(OldTuple::Full(pgoutput::Tuple(vec![
                text("3"),
                text("toast"),
                big_value,
                text("sad"),
            ]))),
            new: pgoutput::Tuple(vec![
                text("3"),
                text("toast2"),
                TupleValue::Unchanged,
                text("sad"),
            ]),
        }
    );

    // TRUNCATE: options and relation ids (order not guaranteed by the docs).
    assert_eq!(
        change(11, 0),
        Message::Truncate {
            cascade: false,
            restart_identity: false,
            relation_ids: vec![full_id],
        }
    );
    let Message::Truncate {
        cascade: true,
        restart_identity: true,
        mut relation_ids,
    } = change(12, 0)
    else {
        panic!(
            "expected TRUNCATE ... RESTART IDENTITY CASCADE, got {:?}",
            change(12, 0)
        );
    };
    relation_ids.sort_unstable();
    let mut expected_ids = vec![items_id, full_id];
    expected_ids.sort_unstable();
    assert_eq!(relation_ids, expected_ids);

    // Logical messages: the non-transactional one outside any transaction, before the last.
    assert_eq!(outside.len(), 1, "one message outside transactions");
    let (before_txn, immediate) = &outside[0];
    assert_eq!(
        *before_txn, 13,
        "delivered before the transactional message's transaction"
    );
    let Message::Message {
        transactional: false,
        lsn: immediate_lsn,
        prefix: "np",
        content: b"now",
    } = immediate
    else {
        panic!("unexpected non-transactional message {immediate:?}");
    };
    // A message's LSN is the end of its WAL record, as pg_logical_emit_message returns it.
    assert_eq!(*immediate_lsn, emitted[0]);
    assert!(*immediate_lsn > txns[12].commit.end_lsn);
    let Message::Message {
        transactional: true,
        lsn,
        prefix: "p",
        content: b"hello",
    } = change(13, 0)
    else {
        panic!("unexpected transactional message {:?}", change(13, 0));
    };
    assert_eq!(lsn, emitted[1]);
    assert!(lsn <= txns[13].commit.commit_lsn);

    client
        .execute("SELECT pg_drop_replication_slot($1)", &[&slot])
        .await
        .expect("the slot can be dropped");
}
