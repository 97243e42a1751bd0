//! Sources of change events: where rows come from before they become events.

pub mod postgres;
