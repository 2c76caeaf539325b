//! Shared pieces of Tally's integration tests: TPC-H data made once per test binary,
//! clusters with the tables registered, single-process DataFusion answers to compare
//! against, and the `tally` binary for multi-process tests.

pub mod compare;
pub mod etcd;
pub mod harness;
pub mod process;
