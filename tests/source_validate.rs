//! Validation of PostgreSQL source configs against the real server: each problem is reported
//! on the key it concerns, with the fix, and never with the password.

use tributary::{
    config::ConnectorConfig,
    source::postgres::validate::{Finding, Severity, validate},
};

use crate::support::{
    postgres::{connect, superuser_config},
    run_detached,
    source::SourceFixture,
    unique_name,
};

async fn findings(fixture: &SourceFixture, tables: &str, extra: &[(&str, &str)]) -> Vec<Finding> {
    let json = fixture.connector_json(tables, extra);
    let connector = ConnectorConfig::from_json(&json).expect("the connector JSON parses");
    let findings = validate(&connector).await;
    for finding in &findings {
        for (key, value) in extra {
            if *key == "database.password" {
                assert!(
                    !finding.message.contains(value),
                    "the password leaks into {finding}"
                );
            }
        }
    }
    findings
}

/// The errors on `key`, or a failure listing every finding.
fn errors_on<'a>(findings: &'a [Finding], key: &str) -> Vec<&'a Finding> {
    let on_key: Vec<&Finding> = findings
        .iter()
        .filter(|f| f.key == key && f.severity == Severity::Error)
        .collect();
    assert!(
        !on_key.is_empty(),
        "no error on {key}; findings: {findings:#?}"
    );
    on_key
}

fn no_errors(findings: &[Finding]) {
    let errors: Vec<&Finding> = findings.iter().filter(|f| f.is_error()).collect();
    assert!(errors.is_empty(), "unexpected errors: {errors:#?}");
}

async fn create_tables(fixture: &SourceFixture) {
    fixture
        .db
        .client()
        .batch_execute(
            "CREATE TABLE orders (id int PRIMARY KEY, note text);
             CREATE TABLE items (id int PRIMARY KEY)",
        )
        .await
        .expect("create tables");
}

/// A login role that exists for one test (role names are cluster-wide).
struct TestRole {
    name: String,
}

impl TestRole {
    async fn create(options: &str, password: &str) -> Self {
        let name = unique_name("tributary_role");
        connect(&superuser_config("postgres"))
            .await
            .batch_execute(&format!(
                "CREATE ROLE {name} LOGIN {options} PASSWORD '{password}'"
            ))
            .await
            .expect("create role");
        Self { name }
    }
}

impl Drop for TestRole {
    fn drop(&mut self) {
        let name = self.name.clone();
        run_detached(async move {
            let admin = connect(&superuser_config("postgres")).await;
            if let Err(err) = admin
                .batch_execute(&format!("DROP ROLE IF EXISTS {name}"))
                .await
            {
                eprintln!("could not drop role {name}: {err}");
            }
        });
    }
}

#[tokio::test]
async fn source_validate_a_valid_config_has_no_errors() {
    let fixture = SourceFixture::new().await;
    create_tables(&fixture).await;
    let findings = findings(&fixture, "public.orders,public.items", &[]).await;
    no_errors(&findings);

    let keep_size: String = fixture
        .db
        .client()
        .query_one("SHOW max_slot_wal_keep_size", &[])
        .await
        .expect("setting")
        .get(0);
    let warned = findings
        .iter()
        .any(|f| f.key == "slot.name" && f.severity == Severity::Warning);
    assert_eq!(
        warned,
        keep_size == "-1",
        "max_slot_wal_keep_size = {keep_size}; findings: {findings:#?}"
    );
    if warned {
        let warning = findings
            .iter()
            .find(|f| f.key == "slot.name")
            .expect("found");
        assert!(warning.message.contains("max_slot_wal_keep_size"));
    }
    // Validation changes nothing: the publication is created only when the connector starts.
    let publications = fixture
        .db
        .client()
        .query("SELECT 1 FROM pg_publication", &[])
        .await
        .expect("pg_publication");
    assert!(publications.is_empty());
}

#[tokio::test]
async fn source_validate_connection_problems_name_the_key() {
    let fixture = SourceFixture::new().await;
    create_tables(&fixture).await;

    let wrong_password = findings(
        &fixture,
        "public.orders",
        &[
            ("database.user", "tributary"),
            ("database.password", "not-the-password"),
        ],
    )
    .await;
    let error = errors_on(&wrong_password, "database.password")[0];
    assert!(error.message.contains("28P01"), "{error}");
    assert_eq!(wrong_password.len(), 1, "{wrong_password:#?}");

    let no_password = findings(&fixture, "public.orders", &[("database.user", "tributary")]).await;
    let error = errors_on(&no_password, "database.password")[0];
    assert!(error.message.contains("set database.password"), "{error}");

    let missing_db = unique_name("tributary_missing");
    let unknown_db = findings(
        &fixture,
        "public.orders",
        &[("database.dbname", missing_db.as_str())],
    )
    .await;
    let error = errors_on(&unknown_db, "database.dbname")[0];
    assert!(error.message.contains(&missing_db), "{error}");

    // A port nothing listens on: bound, then released.
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("address")
        .port()
        .to_string();
    let unreachable = findings(
        &fixture,
        "public.orders",
        &[("database.port", closed_port.as_str())],
    )
    .await;
    let error = errors_on(&unreachable, "database.hostname")[0];
    assert!(error.message.contains(&closed_port), "{error}");
    assert!(error.message.contains("refused"), "{error}");
}

#[tokio::test]
async fn source_validate_privileges_of_a_plain_role() {
    let fixture = SourceFixture::new().await;
    create_tables(&fixture).await;
    let password = "validate-test-pw";
    let role = TestRole::create("", password).await;

    let found = findings(
        &fixture,
        "public.orders,public.items",
        &[
            ("database.user", role.name.as_str()),
            ("database.password", password),
        ],
    )
    .await;
    let error = errors_on(&found, "database.user")[0];
    assert!(
        error
            .message
            .contains(&format!("ALTER ROLE \"{}\" REPLICATION", role.name)),
        "{error}"
    );
    // filtered mode would create the publication and add tables owned by postgres to it.
    let autocreate = errors_on(&found, "publication.autocreate.mode");
    assert_eq!(autocreate.len(), 2, "{autocreate:#?}");
    let create = autocreate
        .iter()
        .find(|f| f.message.contains("GRANT CREATE ON DATABASE"))
        .expect("the missing CREATE privilege is reported");
    assert!(
        create.message.contains(&format!("TO \"{}\";", role.name)),
        "{create}"
    );
    let ownership = autocreate
        .iter()
        .find(|f| f.message.contains("does not own"))
        .expect("the missing ownership is reported");
    for expected in [
        "public.orders (owner postgres)",
        "public.items (owner postgres)",
        &format!("GRANT \"postgres\" TO \"{}\";", role.name),
    ] {
        assert!(ownership.message.contains(expected), "{ownership}");
    }

    // all_tables needs a superuser to create the publication.
    let all_tables = findings(
        &fixture,
        "public.orders",
        &[
            ("database.user", role.name.as_str()),
            ("database.password", password),
            ("publication.autocreate.mode", "all_tables"),
        ],
    )
    .await;
    let error = errors_on(&all_tables, "publication.autocreate.mode")[0];
    assert!(error.message.contains("superuser"), "{error}");
    drop(role);
}

#[tokio::test]
async fn source_validate_tables_without_row_identity() {
    let fixture = SourceFixture::new().await;
    fixture
        .db
        .client()
        .batch_execute(
            "CREATE TABLE keyed (id int PRIMARY KEY);
             CREATE TABLE no_key (a int);
             CREATE TABLE nothing (id int PRIMARY KEY);
             ALTER TABLE nothing REPLICA IDENTITY NOTHING;
             CREATE TABLE whole_row (a int);
             ALTER TABLE whole_row REPLICA IDENTITY FULL",
        )
        .await
        .expect("create tables");
    let found = findings(&fixture, "public\\..*", &[]).await;
    let errors = errors_on(&found, "table.include.list");
    assert_eq!(errors.len(), 2, "{errors:#?}");
    let no_key = errors
        .iter()
        .find(|f| f.message.contains("public.no_key"))
        .expect("no_key reported");
    assert!(no_key.message.contains("no primary key"));
    assert!(
        no_key
            .message
            .contains(r#"ALTER TABLE "public"."no_key" REPLICA IDENTITY FULL;"#)
    );
    let nothing = errors
        .iter()
        .find(|f| f.message.contains("public.nothing"))
        .expect("nothing reported");
    assert!(nothing.message.contains("REPLICA IDENTITY NOTHING"));
    assert!(
        nothing
            .message
            .contains(r#"ALTER TABLE "public"."nothing" REPLICA IDENTITY FULL;"#)
    );

    // Nothing to capture is a warning, not an error.
    let none = findings(&fixture, "public.absent", &[]).await;
    no_errors(&none);
    assert!(
        none.iter()
            .any(|f| f.key == "table.include.list" && f.severity == Severity::Warning),
        "{none:#?}"
    );
}

#[tokio::test]
async fn source_validate_publication() {
    let fixture = SourceFixture::new().await;
    create_tables(&fixture).await;
    let publication = format!("{}_pub", fixture.name);

    let disabled = [("publication.autocreate.mode", "disabled")];
    let missing = findings(&fixture, "public.orders,public.items", &disabled).await;
    let error = errors_on(&missing, "publication.name")[0];
    assert!(
        error.message.contains(&format!(
            r#"CREATE PUBLICATION "{publication}" FOR TABLE "public"."items", "public"."orders";"#
        )),
        "{error}"
    );

    // An existing publication that lacks a captured table.
    fixture
        .db
        .client()
        .batch_execute(&format!(
            "CREATE PUBLICATION {publication} FOR TABLE orders"
        ))
        .await
        .expect("create publication");
    let lacking = findings(&fixture, "public.orders,public.items", &disabled).await;
    let error = errors_on(&lacking, "publication.name")[0];
    assert!(
        error.message.contains(&format!(
            r#"ALTER PUBLICATION "{publication}" ADD TABLE "public"."items";"#
        )),
        "{error}"
    );
    assert!(!error.message.contains("\"orders\""), "{error}");
    no_errors(&findings(&fixture, "public.orders", &disabled).await);
}

#[tokio::test]
async fn source_validate_slot_of_another_plugin() {
    let fixture = SourceFixture::new().await;
    create_tables(&fixture).await;
    fixture
        .db
        .client()
        .query_one(
            "SELECT pg_create_logical_replication_slot($1, 'test_decoding')",
            &[&fixture.slot],
        )
        .await
        .expect("create slot");
    let found = findings(&fixture, "public.orders", &[]).await;
    let error = errors_on(&found, "slot.name")[0];
    assert!(error.message.contains("test_decoding"), "{error}");
    assert!(
        error.message.contains("pg_drop_replication_slot"),
        "{error}"
    );
}

#[tokio::test]
async fn source_validate_static_errors_come_first() {
    let fixture = SourceFixture::new().await;
    // The closed port would be a connection error, but live checks need a valid config first.
    let found = findings(
        &fixture,
        "public.orders",
        &[("slot.name", "Bad-Name"), ("database.port", "1")],
    )
    .await;
    let error = errors_on(&found, "slot.name")[0];
    assert!(error.message.contains("a-z, 0-9 and _"), "{error}");
    assert!(
        found.iter().all(|f| f.key != "database.hostname"),
        "{found:#?}"
    );
}
