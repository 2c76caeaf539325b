//! What Tally's roles share: typed IDs, the shuffle plan nodes that cut a physical plan into
//! stages, their datafusion-proto codec, the spool of stage outputs and the Flight transfer
//! between workers.

pub mod auth;
pub mod bucketing;
pub mod codec;
pub mod compression;
pub mod distinct;
pub mod failure;
pub mod flight_fetch;
pub mod hive_sink;
pub mod ids;
pub mod ipc;
pub mod job_status;
pub mod kafka;
pub mod object_stores;
pub mod security;
pub mod shuffle_env;
pub mod shuffle_reader;
pub mod shuffle_writer;
pub mod spark;
pub mod spool;
pub mod tickets;
pub mod tls;

/// gRPC messages may carry large plans and batches; both ends set this limit explicitly.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;

/// The innermost cause of an error: transport errors hide the useful part ("Connection
/// refused") in their sources.
/// Bytes in binary units (`512 B`, `2.4 MiB`), as the CLI and the web UI show them.
pub fn binary_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

pub fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = err;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}
