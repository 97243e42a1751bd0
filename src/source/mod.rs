//! Sources of change events: where the pipeline's rows come from.

pub mod postgres;
