//! Materialized views that keep the partial states of their aggregates, per group, as
//! bucketed Parquet, plus a manifest of exactly which source files they cover. A refresh
//! reads only the files not yet covered and merges their partial states into the stored ones
//! (`PartialReduce`), so keeping a daily aggregate current costs the new batch, not the day.
//!
//! - `statements.rs`: CREATE / REFRESH / DROP MATERIALIZED VIEW.
//! - `definition.rs`: what a view's query means, and what it refuses.
//! - `states.rs`: the partial, merge and final aggregate pieces; restricting a scan to files.
//! - `table.rs`: a view as a table (finalized where its bucket files are read).
//! - `location.rs`: where the generations of states live (a folder or an S3 prefix).
//! - `coverage.rs`: which source files are new, changed or gone.
//! - `rewrite.rs`: aggregations over a view's source answered from its states.
//! - `kafka_offsets.rs`: what a view over a Kafka topic has read, and what a refresh reads.
//! - `touched.rs`: which buckets new files can change, from their Parquet statistics.
//!
//! The jobs that create and refresh views, and their commits, are in `../view_jobs.rs`.

mod coverage;
mod definition;
mod kafka_offsets;
mod location;
mod rewrite;
mod statements;
mod states;
mod table;
mod touched;

pub(crate) use coverage::{InputChanges, coverage_summary, current_inputs, now_ms};
pub(crate) use kafka_offsets::{kafka_ranges, records_after};
pub(crate) use location::ViewLocation;
pub(crate) use rewrite::{ViewCandidate, answer_from_views};
pub(crate) use statements::{RefreshMode, ViewStatement, parse_view_statement};
pub(crate) use states::{CompiledView, inputs_of, restrict_to};
pub(crate) use table::{MaterializedViewTable, generation_dir};
pub(crate) use touched::touched_buckets;
