//! Integration tests, one module per concern, linked into one test binary: each test
//! still runs in its own process under nextest, and the suite links Tally once, not once
//! per file.

mod bad_input;
mod bench_compare;
mod bucketing;
mod cli_errors;
mod deploy;
mod distinct;
mod eager;
mod etcd;
mod explain;
mod flight_sql;
mod install_deps;
mod kafka;
mod limits;
mod lineage;
mod memory;
mod object_store;
mod partitions;
mod planner;
mod processes;
mod quality;
mod readme;
mod recovery;
mod security;
mod shuffle;
mod spark_sql;
mod splits;
mod table_writes;
mod tables;
mod tpch;
mod views;
mod web_ui;
