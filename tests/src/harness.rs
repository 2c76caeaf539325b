//! Test clusters and reference answers.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use arrow::array::RecordBatch;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use std::collections::BTreeMap;

use tally_client::tpch::{TPCH_TABLES, generate_tpch};
use tally_client::{Client, LocalCluster, LocalClusterOptions, QueryResult};
use tally_coordinator::CoordinatorConfig;

/// TPC-H scale 0.01 as Parquet (4 files per large table). Generated once and shared by all
/// test processes: it appears under its final name only when complete.
pub fn tpch_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join("tally-tests-tpch-sf0.01-4parts");
        if dir.join(COMPLETE).exists() {
            return dir;
        }
        let staging = dir.with_extension(format!("tmp-{}", std::process::id()));
        generate_tpch(0.01, &staging, 4).expect("generate TPC-H scale 0.01");
        std::fs::write(staging.join(COMPLETE), b"").expect("mark TPC-H data complete");
        if std::fs::rename(&staging, &dir).is_err() {
            // Another test process finished first; use its copy.
            let _ = std::fs::remove_dir_all(&staging);
            assert!(
                dir.join(COMPLETE).exists(),
                "no complete TPC-H data at {}",
                dir.display()
            );
        }
        dir
    })
}

const COMPLETE: &str = ".complete";

/// An embedded cluster of `workers` workers with the TPC-H tables registered.
pub async fn tpch_cluster(workers: usize) -> LocalCluster {
    tpch_cluster_with(LocalClusterOptions {
        workers,
        ..Default::default()
    })
    .await
}

/// An embedded cluster made with `options`, with the TPC-H tables registered.
pub async fn tpch_cluster_with(options: LocalClusterOptions) -> LocalCluster {
    let cluster = LocalCluster::start_with(options)
        .await
        .expect("start local cluster");
    for table in TPCH_TABLES {
        let path = tpch_dir().join(table);
        cluster
            .register_table(table, path.to_str().unwrap())
            .await
            .expect("register TPC-H table");
    }
    cluster
}

/// An embedded cluster whose SQL may read and write tables under `roots`.
pub async fn cluster_with_data_roots(workers: usize, roots: &[&Path]) -> LocalCluster {
    LocalCluster::start_with(LocalClusterOptions {
        workers,
        coordinator: CoordinatorConfig {
            data_roots: roots.iter().map(|r| r.to_path_buf()).collect(),
            ..Default::default()
        },
        ..Default::default()
    })
    .await
    .expect("start local cluster")
}

/// How many workers the coordinator behind `client` counts as alive.
pub async fn alive_workers(client: &Client) -> usize {
    let workers = client.list_workers().await.unwrap();
    workers.iter().filter(|w| w.alive).count()
}

/// Runs `sql` with `settings` (e.g. `("tally.planner", "naive")`), panicking on error.
pub async fn run_with(client: &Client, sql: &str, settings: &[(&str, &str)]) -> QueryResult {
    let settings: BTreeMap<String, String> = settings
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    client
        .sql_with_settings(sql, &settings)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// The answer single-process DataFusion gives on the same files.
pub async fn datafusion_answer(sql: &str) -> Vec<RecordBatch> {
    let ctx = SessionContext::new();
    for table in TPCH_TABLES {
        let path = tpch_dir().join(table);
        ctx.register_parquet(table, path.to_str().unwrap(), ParquetReadOptions::default())
            .await
            .expect("register table in DataFusion");
    }
    ctx.sql(sql)
        .await
        .expect("plan in DataFusion")
        .collect()
        .await
        .expect("run in DataFusion")
}

/// The `tally` binary of this build, built if this test run has not built it yet.
pub fn tally_binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().expect("test binary path");
        let profile_dir = exe
            .parent()
            .and_then(|deps| deps.parent())
            .expect("target profile dir");
        let binary = profile_dir.join("tally");
        if !binary.exists() {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
            let status = Command::new(cargo)
                .args(["build", "-p", "tally-client", "--bin", "tally"])
                .status()
                .expect("run cargo build");
            assert!(status.success(), "cargo build of the tally binary failed");
        }
        binary
    })
    .clone()
}

/// EXPLAIN's stage rows as text for plan snapshots, each scan shortened to the folder of its
/// files (a table, or a materialized view's generation).
pub fn explained_stages(result: &QueryResult) -> String {
    use arrow::array::{Array, AsArray};
    let mut text = String::new();
    for batch in &result.batches {
        let column = |name: &str| batch.column(batch.schema().index_of(name).unwrap()).clone();
        let (outputs, reads, plans) = (column("output"), column("reads"), column("plan"));
        let (outputs, reads, plans) = (
            outputs.as_string::<i32>(),
            reads.as_string::<i32>(),
            plans.as_string::<i32>(),
        );
        for row in 0..batch.num_rows() {
            if outputs.value(row) == "job" {
                continue;
            }
            text.push_str(&format!(
                "output={} reads=[{}]\n",
                outputs.value(row),
                reads.value(row)
            ));
            for line in plans.value(row).lines() {
                let line = match line.find("DataSourceExec: ") {
                    Some(at) => {
                        let table = line.split('/').rev().nth(1).unwrap_or("?").to_string();
                        format!("{}DataSourceExec: {table}", &line[..at])
                    }
                    None => line.to_string(),
                };
                text.push_str("  ");
                text.push_str(&line);
                text.push('\n');
            }
        }
        assert!(plans.is_valid(0));
    }
    text
}
