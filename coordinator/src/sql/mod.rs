//! The SQL front end: the catalog of tables, the planning session and its settings, and
//! turning a statement into a job (or an answer, for DDL and EXPLAIN).

pub(crate) mod bucketed_table;
pub(crate) mod catalog;
pub(crate) mod create_table;
pub(crate) mod ctas;
pub(crate) mod data_roots;
pub(crate) mod explain;
pub(crate) mod frontend;
pub(crate) mod hive_partitions;
pub(crate) mod kafka_table;
pub(crate) mod s3_tables;
pub(crate) mod session;
pub(crate) mod spark;
pub(crate) mod sql_guard;
pub(crate) mod table_format;
pub(crate) mod table_insert;
pub(crate) mod table_layout;
pub(crate) mod table_pins;
pub(crate) mod table_writes;
pub(crate) mod view_jobs;
pub(crate) mod views;
