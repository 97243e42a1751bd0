//! Logical replication on the real server: a pgoutput slot on a test database decodes the
//! committed changes of a publication, and can be dropped.

use crate::support::{postgres::TestDatabase, unique_name};

/// Decodes just enough of a pgoutput (protocol 1) Insert message to read its text columns.
fn insert_columns(message: &[u8]) -> Vec<Option<String>> {
    assert_eq!(message[0], b'I', "not an Insert message");
    assert_eq!(message[5], b'N', "an Insert carries a new tuple");
    let count = u16::from_be_bytes([message[6], message[7]]);
    let mut at = 8;
    let mut columns = Vec::new();
    for _ in 0..count {
        let kind = message[at];
        at += 1;
        match kind {
            b'n' => columns.push(None),
            b't' => {
                let len = u32::from_be_bytes(message[at..at + 4].try_into().expect("4 bytes"));
                at += 4;
                let text = &message[at..at + len as usize];
                at += len as usize;
                columns.push(Some(String::from_utf8(text.to_vec()).expect("UTF-8 text")));
            }
            other => panic!("unexpected column kind {other}"),
        }
    }
    assert_eq!(at, message.len(), "trailing bytes after the tuple");
    columns
}

#[tokio::test]
async fn pgoutput_slot_decodes_committed_changes_and_is_dropped() {
    let db = TestDatabase::create().await;
    let client = db.client();
    client
        .batch_execute(
            "CREATE TABLE items (id int PRIMARY KEY, name text);
             CREATE TABLE ignored (id int PRIMARY KEY);
             CREATE PUBLICATION test_pub FOR TABLE items;",
        )
        .await
        .expect("schema");

    let slot = unique_name("slot");
    client
        .execute(
            "SELECT pg_create_logical_replication_slot($1, 'pgoutput')",
            &[&slot],
        )
        .await
        .expect("a pgoutput slot can be created");
    let row = client
        .query_one(
            "SELECT slot_name::text, plugin::text FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .expect("the new slot is listed");
    assert_eq!(row.get::<_, String>(0), slot);
    assert_eq!(row.get::<_, String>(1), "pgoutput");

    client
        .batch_execute(
            "BEGIN; INSERT INTO items VALUES (1, 'alpha'), (2, NULL); COMMIT;
             INSERT INTO ignored VALUES (7);
             BEGIN; INSERT INTO items VALUES (3, 'gamma'); ROLLBACK;
             INSERT INTO items VALUES (4, 'delta');",
        )
        .await
        .expect("changes");

    let messages: Vec<Vec<u8>> = client
        .query(
            "SELECT data FROM pg_logical_slot_peek_binary_changes($1, NULL, NULL,
               'proto_version', '1', 'publication_names', 'test_pub')",
            &[&slot],
        )
        .await
        .expect("the slot decodes")
        .iter()
        .map(|row| row.get(0))
        .collect();

    let kinds: String = messages.iter().map(|m| m[0] as char).collect();
    // Two committed transactions touch `items` (Begin, Relation once, Inserts, Commit). Since
    // PostgreSQL 15 the transaction on the unpublished table is skipped as empty; the rolled-back
    // one never reaches the slot.
    assert_eq!(kinds, "BRIICBIC", "message kinds in slot order");
    let relation = &messages[1];
    assert!(
        relation.windows(b"items\0".len()).any(|w| w == b"items\0"),
        "the Relation message names the table"
    );
    let inserts: Vec<_> = messages
        .iter()
        .filter(|m| m[0] == b'I')
        .map(|m| insert_columns(m))
        .collect();
    let some = |s: &str| Some(s.to_owned());
    assert_eq!(
        inserts,
        [
            vec![some("1"), some("alpha")],
            vec![some("2"), None],
            vec![some("4"), some("delta")],
        ]
    );

    client
        .execute("SELECT pg_drop_replication_slot($1)", &[&slot])
        .await
        .expect("the slot can be dropped");
    let left = client
        .query(
            "SELECT 1 FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .expect("slots can be listed");
    assert!(
        left.is_empty(),
        "slot {slot} still exists after dropping it"
    );
}
