//! The replication connection against the real server: every authentication method, TLS in
//! each sslmode, replication commands, and a stream that keeps the walsender's attention while
//! its reader is stalled.

use std::{path::PathBuf, time::Duration};

use secrecy::SecretString;
use tributary::{
    event::Lsn,
    source::postgres::{
        replication::{ConnectConfig, Error, ReplicationConnection, SlotSnapshot},
        tls::{SslConfig, SslMode},
    },
};

use crate::support::{
    postgres::{self, TestDatabase},
    unique_name,
};

fn config(dbname: &str, user: &str, password: Option<&str>) -> ConnectConfig {
    ConnectConfig {
        host: postgres::host(),
        port: postgres::port(),
        user: user.to_owned(),
        password: password.map(|p| SecretString::from(p.to_owned())),
        dbname: dbname.to_owned(),
        ssl: SslConfig {
            mode: SslMode::Disable,
            root_cert: None,
        },
        application_name: "tributary-tests".to_owned(),
        connect_timeout: Duration::from_secs(5),
    }
}

/// The CA that signed the test server's certificate (for `localhost`), made by services.sh.
fn test_ca() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".dev/postgres/tls/ca.crt");
    assert!(
        path.exists(),
        "{} is missing; run `scripts/services.sh up`, which creates the test server's certificates",
        path.display()
    );
    path
}

async fn connect(config: &ConnectConfig) -> ReplicationConnection {
    ReplicationConnection::connect(config).await.unwrap_or_else(|err| {
        panic!(
            "replication connection as {} failed: {err}; if the server is down, run `scripts/services.sh up`",
            config.user
        )
    })
}

#[tokio::test]
async fn authenticates_with_trust_scram_md5_and_cleartext() {
    for (user, password) in [
        ("postgres", None),
        ("tributary", Some("tributary-scram-pw")),
        ("tributary_md5", Some("tributary-md5-pw")),
        ("tributary_cleartext", Some("tributary-cleartext-pw")),
    ] {
        let mut connection = connect(&config("postgres", user, password)).await;
        let identity = connection.identify_system().await.expect("IDENTIFY_SYSTEM");
        assert_eq!(identity.dbname.as_deref(), Some("postgres"), "as {user}");
        assert!(identity.xlog_position > Lsn::ZERO);
        assert_eq!(connection.server_major_version(), Some(15));
        let who = connection
            .simple_query("SELECT current_user")
            .await
            .expect("ordinary SQL on a replication connection");
        assert_eq!(who[0].rows[0][0].as_deref(), Some(user));
    }
}

#[tokio::test]
async fn wrong_or_missing_password_is_a_permanent_error() {
    for user in ["tributary", "tributary_md5", "tributary_cleartext"] {
        let err = ReplicationConnection::connect(&config("postgres", user, Some("wrong")))
            .await
            .expect_err("a wrong password must be refused");
        assert_eq!(err.code(), Some("28P01"), "{user}: {err}");
        assert!(!err.is_transient(), "{err}");
        assert!(
            err.to_string().contains("password authentication failed"),
            "{err}"
        );
    }
    let err = ReplicationConnection::connect(&config("postgres", "tributary", None))
        .await
        .expect_err("no password configured");
    assert!(matches!(err, Error::Auth { .. }), "{err}");
    assert!(err.to_string().contains("none is configured"), "{err}");
}

#[tokio::test]
async fn unreachable_server_is_a_transient_error_naming_the_address() {
    let mut unreachable = config("postgres", "postgres", None);
    unreachable.port = 1;
    let err = ReplicationConnection::connect(&unreachable)
        .await
        .expect_err("nothing listens on port 1");
    assert!(err.is_transient(), "{err}");
    assert!(err.to_string().contains(":1"), "{err}");
}

async fn uses_tls(connection: &mut ReplicationConnection) -> bool {
    let result = connection
        .simple_query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .await
        .expect("pg_stat_ssl");
    result[0].rows[0][0].as_deref() == Some("t")
}

#[tokio::test]
async fn tls_modes_encrypt_and_verify_as_libpq_does() {
    let ca = test_ca();
    let with = |host: &str, mode: SslMode, root: Option<PathBuf>| {
        let mut c = config("postgres", "tributary", Some("tributary-scram-pw"));
        c.host = host.to_owned();
        c.ssl = SslConfig {
            mode,
            root_cert: root,
        };
        c
    };

    let mut plain = connect(&with("127.0.0.1", SslMode::Disable, None)).await;
    assert!(!uses_tls(&mut plain).await, "disable must not encrypt");
    for mode in [SslMode::Prefer, SslMode::Require] {
        let mut c = connect(&with("127.0.0.1", mode, None)).await;
        assert!(uses_tls(&mut c).await, "{mode} must encrypt");
    }
    // The certificate names localhost: verify-full accepts it there and refuses it for the IP;
    // verify-ca checks only the chain.
    let mut full = connect(&with("localhost", SslMode::VerifyFull, Some(ca.clone()))).await;
    assert!(uses_tls(&mut full).await);
    let err =
        ReplicationConnection::connect(&with("127.0.0.1", SslMode::VerifyFull, Some(ca.clone())))
            .await
            .expect_err("the certificate is not valid for 127.0.0.1");
    assert!(matches!(err, Error::Tls(_)), "{err}");
    let mut ca_only = connect(&with("127.0.0.1", SslMode::VerifyCa, Some(ca))).await;
    assert!(uses_tls(&mut ca_only).await);
    // Without our CA the chain leads nowhere trusted.
    let err = ReplicationConnection::connect(&with("localhost", SslMode::VerifyFull, None))
        .await
        .expect_err("the test CA is not a public root");
    assert!(matches!(err, Error::Tls(_)), "{err}");
    assert!(!err.is_transient());
}

#[tokio::test]
async fn streams_changes_and_confirms_only_what_it_is_told() {
    let db = TestDatabase::create().await;
    db.client()
        .batch_execute(
            "CREATE TABLE items (id int PRIMARY KEY, name text);
             CREATE PUBLICATION test_pub FOR TABLE items;",
        )
        .await
        .expect("schema");
    let slot = unique_name("slot");
    let mut connection = connect(&config(&db.name, "postgres", None)).await;
    let created = connection
        .create_slot(&slot, false, SlotSnapshot::Nothing)
        .await
        .expect("slot");
    assert_eq!(created.slot_name, slot);
    let again = connection
        .create_slot(&slot, false, SlotSnapshot::Nothing)
        .await
        .expect_err("the slot exists");
    assert_eq!(again.code(), Some("42710"), "{again}");

    db.client()
        .batch_execute("INSERT INTO items VALUES (1, 'a'), (2, 'b')")
        .await
        .expect("insert");
    let mut stream = connection
        .start_replication(
            &slot,
            created.consistent_point,
            &[
                ("proto_version", "1"),
                ("publication_names", "test_pub"),
                ("messages", "true"),
            ],
            Duration::from_millis(200),
        )
        .await
        .expect("START_REPLICATION");

    // XLogData frames carry pgoutput messages: Begin, Relation, Insert x2, Commit.
    let mut kinds = String::new();
    let mut commit_end = Lsn::ZERO;
    while !kinds.ends_with('C') {
        let frame = tokio::time::timeout(Duration::from_secs(10), stream.next_frame())
            .await
            .expect("a frame within 10 s")
            .expect("stream healthy")
            .expect("stream open");
        if frame[0] == b'w' {
            let message = &frame[25..];
            kinds.push(message[0] as char);
            if message[0] == b'C' {
                commit_end = Lsn(u64::from_be_bytes(message[10..18].try_into().expect("8")));
            }
        }
    }
    assert_eq!(kinds, "BRIIC");

    let confirmed = || async {
        db.client()
            .query_one(
                "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot],
            )
            .await
            .expect("slot row")
            .get::<_, String>(0)
            .parse::<Lsn>()
            .expect("an LSN")
    };
    // Nothing confirmed yet: the slot stays where it was created.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(confirmed().await, created.consistent_point);

    stream.confirm(commit_end);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while confirmed().await != commit_end {
        assert!(
            tokio::time::Instant::now() < deadline,
            "confirmed_flush_lsn did not reach {commit_end}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_stalled_reader_does_not_let_the_walsender_time_out() {
    let db = TestDatabase::create().await;
    db.client()
        .batch_execute(
            "CREATE TABLE big (id int PRIMARY KEY, pad text);
             CREATE PUBLICATION test_pub FOR TABLE big;",
        )
        .await
        .expect("schema");
    let slot = unique_name("slot");
    let mut connection = connect(&config(&db.name, "postgres", None)).await;
    let created = connection
        .create_slot(&slot, false, SlotSnapshot::Nothing)
        .await
        .expect("slot");
    // Far more than the socket buffers hold, so the walsender blocks on sending.
    db.client()
        .batch_execute(
            "INSERT INTO big SELECT g, repeat('x', 200) FROM generate_series(1, 100000) g",
        )
        .await
        .expect("load");
    let mut stream = connection
        .start_replication(
            &slot,
            created.consistent_point,
            &[("proto_version", "1"), ("publication_names", "test_pub")],
            Duration::from_secs(1),
        )
        .await
        .expect("START_REPLICATION");
    stream
        .next_frame()
        .await
        .expect("first frame")
        .expect("open");

    // The test server's wal_sender_timeout is 10 s: stall longer than that.
    tokio::time::sleep(Duration::from_secs(12)).await;

    let mut inserts = 0;
    while inserts < 100_000 {
        let frame = tokio::time::timeout(Duration::from_secs(10), stream.next_frame())
            .await
            .expect("frames keep coming after the stall")
            .expect("the walsender must not have timed out")
            .expect("stream open");
        if frame[0] == b'w' && frame[25] == b'I' {
            inserts += 1;
        }
    }
}
