//! A cluster of separate `tally` processes: a coordinator and 3 workers on 127.0.0.1. Runs a
//! query with a hash exchange through the CLI, checks the answer and its metrics, feeds it
//! bad input, loses a worker, and stops everything.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use tally_client::output::{OutputFormat, write_batches};
use tally_tests::harness::{datafusion_answer, tally_binary, tpch_dir};
use tally_tests::process::{Process, free_port, start_workers};

fn tally<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    Command::new(tally_binary())
        .args(args)
        .output()
        .expect("run tally")
}

/// The CLI failed with one line on stderr that names `expected`.
fn assert_clear_error(output: &Output, expected: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "expected failure, got: {stderr}");
    let stderr = stderr.trim();
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "error spans lines: {stderr}");
    assert!(
        stderr.contains(expected),
        "error {stderr:?} does not name {expected:?}"
    );
}

fn wait_for_alive_workers(coordinator: &str, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let output = tally(&["workers", "--coordinator", coordinator]);
        let alive = String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter(|l| l.contains(" alive "))
            .count();
        if alive == count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{alive} of {count} workers alive"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

const QUERY: &str = "SELECT o_orderpriority, count(*) AS orders, sum(l_quantity) AS quantity \
                     FROM orders JOIN lineitem ON l_orderkey = o_orderkey \
                     GROUP BY o_orderpriority ORDER BY o_orderpriority";

fn csv_of(batches: &[arrow::array::RecordBatch]) -> String {
    let schema = batches[0].schema();
    let mut out = Vec::new();
    write_batches(&mut out, OutputFormat::Csv, &schema, batches).unwrap();
    String::from_utf8(out).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_of_tally_processes_answers_reports_and_survives_bad_input() {
    let data = tpch_dir();
    let expected = csv_of(&datafusion_answer(QUERY).await);
    let spool = tempfile::tempdir().unwrap();
    let port = free_port();
    let coordinator = format!("127.0.0.1:{port}");
    let table = |name: &str| format!("{name}={}", data.join(name).display());
    let (coordinator_process, _) = Process::start(
        "coordinator",
        &[
            "coordinator",
            "--bind",
            &coordinator,
            "--table",
            &table("orders"),
            "--table",
            &table("lineitem"),
        ],
    );
    let mut workers: Vec<Process> =
        start_workers(3, &["--coordinator", &coordinator], spool.path())
            .into_iter()
            .map(|(_, worker)| worker)
            .collect();
    wait_for_alive_workers(&coordinator, 3);

    // The answer, and the bytes its hash exchanges moved between the worker processes (the
    // naive planner hash-shuffles every join and aggregation).
    let metrics_path = spool.path().join("metrics.json");
    let output = tally(&[
        "sql",
        "--coordinator",
        &coordinator,
        "--planner",
        "naive",
        "--format",
        "csv",
        "--metrics-json",
        metrics_path.to_str().unwrap(),
        "-e",
        QUERY,
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout), expected);
    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&metrics_path).unwrap()).unwrap();
    let hash_stages: Vec<&serde_json::Value> = metrics["stages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["output"].as_str().unwrap().starts_with("hash("))
        .collect();
    assert!(!hash_stages.is_empty(), "{metrics}");
    for stage in &hash_stages {
        assert!(stage["shuffle_bytes"].as_u64().unwrap() > 0, "{stage}");
    }
    assert!(metrics["shuffle_bytes"].as_u64().unwrap() > 0);
    assert!(metrics["result_bytes"].as_u64().unwrap() > 0);
    assert!(metrics["elapsed_ms"].is_u64());

    // Bad input: a clear one-line error and a non-zero exit each, the cluster unharmed.
    let with_sql = |sql: &str| -> Vec<String> {
        ["sql", "--coordinator", &coordinator, "-e", sql]
            .map(String::from)
            .to_vec()
    };
    assert_clear_error(&tally(&with_sql("SELEC * FROM orders")), "SELEC");
    assert_clear_error(
        &tally(&with_sql("SELECT * FROM no_such_table")),
        "no_such_table",
    );
    assert_clear_error(
        &tally(&with_sql("SELECT no_such_column FROM orders")),
        "no_such_column",
    );
    assert_clear_error(
        &tally(&[
            "sql",
            "--coordinator",
            &coordinator,
            "--table",
            "missing=/no/such/file.parquet",
            "-e",
            "SELECT 1",
        ]),
        "/no/such/file.parquet",
    );
    let silent = format!("127.0.0.1:{}", free_port());
    assert_clear_error(
        &tally(&["sql", "--coordinator", &silent, "-e", "SELECT 1"]),
        &silent,
    );
    // A worker logs its retries; its last line is the error.
    let output = tally(&["worker", "--coordinator", &silent]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last = stderr.trim().lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: cannot register") && last.contains(&silent),
        "{last}"
    );

    // A worker dies: jobs fail clearly or succeed, never hang; once the coordinator has
    // noticed, the remaining two workers answer correctly.
    drop(workers.pop());
    let output = tally(&with_sql(QUERY));
    if !output.status.success() {
        assert_clear_error(&output, "did not answer");
    }
    wait_for_alive_workers(&coordinator, 2);
    let output = tally(&[
        "sql",
        "--coordinator",
        &coordinator,
        "--format",
        "csv",
        "-e",
        QUERY,
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout), expected);

    for worker in workers {
        worker.stop();
    }
    coordinator_process.stop();
    assert!(Path::new(spool.path()).exists());
}
