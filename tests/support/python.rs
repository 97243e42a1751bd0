//! Python with Confluent's own client, for tests that check what other clients read.

/// A Python with Confluent's client (`confluent-kafka[avro,schemaregistry]` from PyPI), in a venv
/// under target/ created on first use; fails saying what went wrong when it cannot be made.
pub async fn with_confluent_kafka() -> std::path::PathBuf {
    // Tests run in parallel: one of them makes the venv, the others wait for it.
    static VENV: tokio::sync::OnceCell<std::path::PathBuf> = tokio::sync::OnceCell::const_new();
    VENV.get_or_init(make_venv).await.clone()
}

async fn make_venv() -> std::path::PathBuf {
    let venv = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/registry-venv");
    let python = venv.join("bin/python");
    let ready = |python: std::path::PathBuf| async move {
        tokio::process::Command::new(python)
            .args(["-c", "import confluent_kafka.schema_registry.avro"])
            .output()
            .await
            .is_ok_and(|output| output.status.success())
    };
    if ready(python.clone()).await {
        return python;
    }
    let run = |program: std::path::PathBuf, args: Vec<String>| async move {
        let output = tokio::process::Command::new(&program)
            .args(&args)
            .output()
            .await
            .unwrap_or_else(|err| panic!("cannot run {}: {err}", program.display()));
        assert!(
            output.status.success(),
            "{} {args:?} failed (python3 with venv and pip, and PyPI, are needed): {}",
            program.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    };
    run(
        "python3".into(),
        vec!["-m".into(), "venv".into(), venv.display().to_string()],
    )
    .await;
    run(
        venv.join("bin/pip"),
        vec![
            "install".into(),
            "-q".into(),
            "confluent-kafka[avro,schemaregistry]".into(),
        ],
    )
    .await;
    python
}
