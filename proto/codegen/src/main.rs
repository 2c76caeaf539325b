//! `cargo run --manifest-path proto/codegen/Cargo.toml` regenerates Tally's gRPC code.
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_crate = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let protos = ["plan", "worker", "coordinator"]
        .map(|name| proto_crate.join(format!("proto/tally/{name}.proto")));
    tonic_prost_build::configure()
        .out_dir(proto_crate.join("src/generated"))
        .compile_protos(&protos, &[proto_crate.join("proto")])?;
    Ok(())
}
