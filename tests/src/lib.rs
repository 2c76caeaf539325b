//! Shared pieces of Tally's integration tests: TPC-H data made once per test binary,
//! clusters with the tables registered, single-process DataFusion answers to compare
//! against, the `tally` binary for multi-process tests, and raw gRPC calls for bad input.

pub mod compare;
pub mod etcd;
pub mod harness;
pub mod kafka;
pub mod moto;
pub mod process;
pub mod raw_grpc;
