//! The services are what the harness promises, and a missing one is reported, not skipped.

use std::time::Duration;

use tributary::kafka::ClientSettings;

use crate::support::{kafka, postgres};

#[tokio::test]
async fn postgres_is_set_up_for_logical_replication() {
    let client = postgres::connect(&postgres::superuser_config("postgres")).await;
    let setting = async |name: &str| -> String {
        let row = client
            .query_one("SELECT current_setting($1)", &[&name])
            .await
            .expect("settings can be read");
        row.get(0)
    };
    assert_eq!(setting("wal_level").await, "logical");
    let slots: i32 = setting("max_replication_slots")
        .await
        .parse()
        .expect("a number");
    let senders: i32 = setting("max_wal_senders").await.parse().expect("a number");
    assert!(
        slots >= 16,
        "max_replication_slots is {slots}, want at least 16"
    );
    assert!(
        senders >= 16,
        "max_wal_senders is {senders}, want at least 16"
    );
}

#[tokio::test]
async fn scram_role_authenticates_with_its_password_only() {
    let mut config = postgres::superuser_config("postgres");
    config.user("tributary").password("tributary-scram-pw");
    let client = postgres::connect(&config).await;
    let row = client
        .query_one(
            "SELECT current_user::text, rolreplication FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await
        .expect("the role can query");
    assert_eq!(row.get::<_, String>(0), "tributary");
    assert!(
        row.get::<_, bool>(1),
        "the SCRAM role must have REPLICATION"
    );

    config.password("not-the-password");
    let err = postgres::try_connect(&config)
        .await
        .expect_err("a wrong password must be refused");
    assert!(
        err.contains("password authentication failed"),
        "unexpected error: {err}"
    );
}

#[tokio::test]
async fn unreachable_postgres_says_how_to_start_it() {
    let config = postgres::superuser_config_at("127.0.0.1", 1, "postgres");
    let err = postgres::try_connect(&config)
        .await
        .expect_err("nothing listens on port 1");
    assert!(err.contains("127.0.0.1:1"), "{err}");
    assert!(err.contains("scripts/services.sh up"), "{err}");
}

#[tokio::test]
async fn unreachable_kafka_says_how_to_start_it() {
    let settings = ClientSettings::new("127.0.0.1:1");
    let err = kafka::check_broker(&settings, Duration::from_secs(2))
        .expect_err("nothing listens on port 1");
    assert!(err.contains("127.0.0.1:1"), "{err}");
    assert!(err.contains("scripts/services.sh up"), "{err}");
}
