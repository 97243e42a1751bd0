//! The client side of the command line: `tributary connectors ...` talks to the REST API of a
//! running worker, and the hidden `tributary docs ...` prints reference pages generated from
//! the code. `main.rs` only parses and dispatches.

mod client;
pub mod connectors;
pub mod docs;
mod table;
