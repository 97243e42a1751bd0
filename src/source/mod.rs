//! Sources of change events.

pub mod postgres;
