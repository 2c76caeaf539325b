//! Generated gRPC and message code for Tally's services, one `.proto` per service.
//!
//! Regenerate with `cargo run --manifest-path proto/codegen/Cargo.toml` after editing
//! `proto/tally/*.proto`. Other crates convert these messages into their own types at the
//! service edge.

pub mod plan {
    include!("generated/tally.plan.rs");
}

pub mod worker {
    include!("generated/tally.worker.rs");
}

pub mod coordinator {
    include!("generated/tally.coordinator.rs");
}
