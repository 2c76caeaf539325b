//! Scan splits sized to the storage: scans are cut into tasks by bytes (`tally.split_bytes`),
//! not by files. One Parquet file of 12 row groups runs as several tasks spread over 3
//! workers, 200 tiny files as one, and both answer as single-process DataFusion does.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::file::properties::WriterProperties;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use tally_client::{Client, JobMetrics, LocalCluster};
use tally_common::ids::JobId;
use tally_tests::compare::assert_same_results;
use tally_tests::harness::run_with;

const REPORT: &str = "SELECT g, count(*) AS n, sum(k) AS total, min(s) AS first, max(s) AS last \
                      FROM events GROUP BY g ORDER BY g";
const ROWS_PER_GROUP: usize = 2000;

/// Rows `from..from + rows` of `events(k, g, s)`.
fn events(from: i64, rows: usize) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int64, false),
        Field::new("g", DataType::Int64, false),
        Field::new("s", DataType::Utf8, false),
    ]));
    let keys = from..from + rows as i64;
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from_iter_values(keys.clone())),
            Arc::new(Int64Array::from_iter_values(keys.clone().map(|k| k % 7))),
            Arc::new(StringArray::from_iter_values(
                keys.map(|k| format!("event-{k}")),
            )),
        ],
    )
    .unwrap()
}

/// Writes `batch` as one Parquet file of `ROWS_PER_GROUP`-row row groups; returns its bytes.
fn write_parquet(path: &Path, batch: &RecordBatch) -> u64 {
    let properties = WriterProperties::builder()
        .set_max_row_group_row_count(Some(ROWS_PER_GROUP))
        .build();
    let file = std::fs::File::create(path).unwrap();
    let mut writer = ArrowWriter::try_new(file, batch.schema(), Some(properties)).unwrap();
    writer.write(batch).unwrap();
    writer.close().unwrap();
    std::fs::metadata(path).unwrap().len()
}

/// Single-process DataFusion's answer to `REPORT` over the Parquet file or folder `path`.
async fn datafusion_report(path: &Path) -> Vec<RecordBatch> {
    let ctx = SessionContext::new();
    ctx.register_parquet(
        "events",
        path.to_str().unwrap(),
        ParquetReadOptions::default(),
    )
    .await
    .unwrap();
    ctx.sql(REPORT).await.unwrap().collect().await.unwrap()
}

/// The task counts of the job's stages that scan (read no other stage).
fn scan_tasks(metrics: &JobMetrics) -> Vec<u32> {
    metrics
        .stages
        .iter()
        .filter(|s| s.input_stages.is_empty())
        .map(|s| s.tasks)
        .collect()
}

/// The workers that ran the job's scan tasks.
async fn scan_workers(client: &Client, metrics: &JobMetrics) -> BTreeSet<String> {
    let status = client
        .job(&JobId::from(metrics.job_id.as_str()))
        .await
        .unwrap();
    status
        .stages
        .iter()
        .filter(|s| s.input_stages.is_empty())
        .flat_map(|s| &s.tasks)
        .filter_map(|t| t.worker_id.as_ref().map(|w| w.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_file_of_twelve_row_groups_runs_as_several_tasks_on_three_workers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.parquet");
    let bytes = write_parquet(&path, &events(1, 12 * ROWS_PER_GROUP));
    let cluster = LocalCluster::start(3).await.unwrap();
    cluster
        .register_table("events", path.to_str().unwrap())
        .await
        .unwrap();
    let client = cluster.client().await.unwrap();
    let expected = datafusion_report(&path).await;

    let whole = run_with(&client, REPORT, &[]).await;
    assert_eq!(
        scan_tasks(&whole.metrics),
        vec![1],
        "under 128 MiB: one task"
    );
    assert_same_results(REPORT, &expected, &whole.batches, true);

    let quarter = bytes.div_ceil(4).to_string();
    let settings = [("tally.split_bytes", quarter.as_str())];
    let split = run_with(&client, REPORT, &settings).await;
    assert_eq!(scan_tasks(&split.metrics), vec![4], "{:?}", split.metrics);
    let scan = &split.metrics.stages[0];
    assert_eq!(
        scan.output_rows,
        4 * 7,
        "every task read rows of all 7 groups"
    );
    assert_same_results(REPORT, &expected, &split.batches, true);
    assert_eq!(scan_workers(&client, &split.metrics).await.len(), 3);

    let explain = run_with(&client, &format!("EXPLAIN {REPORT}"), &settings).await;
    let plans: Vec<String> = explain
        .batches
        .iter()
        .flat_map(|b| {
            let plans = b
                .column(b.schema().index_of("plan").unwrap())
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap()
                .clone();
            (0..plans.len()).map(move |i| plans.value(i).to_string())
        })
        .collect();
    let note = format!("splits=4 bytes={bytes} files=1");
    assert!(
        plans
            .iter()
            .any(|p| p.contains("tasks=4") && p.contains(&note)),
        "{plans:#?}"
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_tiny_files_run_as_few_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("events");
    std::fs::create_dir(&folder).unwrap();
    for file in 0..200 {
        let rows = events(file * 10 + 1, 10);
        write_parquet(&folder.join(format!("part-{file:03}.parquet")), &rows);
    }
    let cluster = LocalCluster::start(3).await.unwrap();
    cluster
        .register_table("events", folder.to_str().unwrap())
        .await
        .unwrap();
    let client = cluster.client().await.unwrap();

    let result = run_with(&client, REPORT, &[]).await;
    assert_eq!(scan_tasks(&result.metrics), vec![1], "{:?}", result.metrics);
    assert_same_results(
        REPORT,
        &datafusion_report(&folder).await,
        &result.batches,
        true,
    );
    cluster.shutdown().await;
}
