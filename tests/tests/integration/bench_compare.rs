//! Smoke test of `bench/compare` (the benchmark against Spark, DuckDB and DataFusion): at
//! scale 0.01, with the engines built here only (no Spark, DuckDB or virtual environment),
//! every query of the set runs on Tally, Tally naive and single-process DataFusion, and the
//! answers' checksums agree.

use std::path::{Path, PathBuf};
use std::process::Command;

use tally_tests::harness::tally_binary;

const QUERIES: [&str; 8] = ["q1", "q3", "q5", "q6", "q10", "q12", "q18", "bucketed"];
const ENGINES: [&str; 3] = ["tally", "tally-naive", "datafusion"];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .into()
}

/// The folder holding this build's `tally` and `datafusion-single`, built if missing.
fn bin_dir() -> PathBuf {
    let dir = tally_binary().parent().unwrap().to_path_buf();
    if !dir.join("datafusion-single").exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
        let status = Command::new(cargo)
            .args(["build", "-p", "tally-bench", "--bin", "datafusion-single"])
            .status()
            .expect("run cargo build");
        assert!(status.success(), "cargo build of datafusion-single failed");
    }
    dir
}

#[test]
fn bench_compare_smoke_run_has_every_query_and_agreeing_answers() {
    let scratch = tempfile::tempdir().unwrap();
    let out = scratch.path().join("results");
    let output = Command::new(repo().join("bench/compare"))
        .args([
            "--scale",
            "0.01",
            "--engines",
            &ENGINES.join(","),
            "--runs",
            "1",
        ])
        .args(["--no-chart", "--bin-dir"])
        .arg(bin_dir())
        .arg("--out")
        .arg(&out)
        .arg("--data")
        .arg(scratch.path().join("data"))
        .output()
        .expect("run bench/compare");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "bench/compare failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let date_files: Vec<PathBuf> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let json = date_files
        .iter()
        .find(|p| p.to_string_lossy().ends_with("-sf0.01.json"))
        .expect("a <date>-sf0.01.json results file");
    let markdown = std::fs::read_to_string(json.with_extension("md")).unwrap();
    assert_eq!(
        stdout.trim(),
        markdown.trim(),
        "the table printed is the file's"
    );
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();

    for query in QUERIES {
        let row = format!("| {query} |");
        assert!(
            markdown.matches(&row).count() >= 3,
            "{query} lacks a row in the time, bytes or answers table:\n{markdown}"
        );
        let reference = &results["datafusion"][query];
        assert!(reference["rows"].as_u64().unwrap() > 0, "{query}: no rows");
        for engine in ENGINES {
            let result = &results[engine][query];
            assert!(
                result["error"].is_null(),
                "{engine} {query}: {}",
                result["error"]
            );
            assert_eq!(
                result["checksum"], reference["checksum"],
                "{engine} {query} disagrees with DataFusion"
            );
            assert_eq!(result["times_ms"].as_array().unwrap().len(), 1);
        }
        // Tally's shuffle-minimizing planner moves fewer bytes than its naive mode.
        assert!(
            results["tally"][query]["shuffle_bytes"].as_u64().unwrap()
                < results["tally-naive"][query]["shuffle_bytes"]
                    .as_u64()
                    .unwrap(),
            "{query}: minimized does not shuffle less than naive"
        );
    }
}

#[test]
fn bench_checksums_ignore_types_and_row_order_but_catch_different_answers() {
    let output = Command::new("python3")
        .args(["-m", "unittest", "-v", "tallybench.test_canonical"])
        .current_dir(repo().join("bench"))
        .output()
        .expect("run python3");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
