//! The `tributary` command line. The worker (`tributary serve`) and the REST client commands
//! are added with the runtime and API modules.

use clap::Parser;

/// Change data capture from PostgreSQL to Kafka, exactly once.
#[derive(Debug, Parser)]
#[command(name = "tributary", version, about, arg_required_else_help = true)]
struct Cli {}

fn main() {
    Cli::parse();
}
