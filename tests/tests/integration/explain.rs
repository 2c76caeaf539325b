//! EXPLAIN shows the distributed plan; EXPLAIN ANALYZE runs it and shows what each stage
//! moved, beside the naive plan's estimate.

use arrow::array::{Array, StringArray, UInt32Array};
use tally_client::QueryResult;
use tally_tests::harness::tpch_cluster;

fn column<'a, T: 'static>(result: &'a QueryResult, name: &str) -> Vec<&'a T> {
    result
        .batches
        .iter()
        .map(|b| {
            b.column(b.schema().index_of(name).unwrap())
                .as_any()
                .downcast_ref::<T>()
                .unwrap()
        })
        .collect()
}

fn texts(result: &QueryResult, name: &str) -> Vec<String> {
    column::<StringArray>(result, name)
        .into_iter()
        .flat_map(|a| {
            (0..a.len())
                .map(|i| a.value(i).to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

const REPORT: &str = "SELECT l_shipmode, sum(l_quantity) FROM lineitem \
                      JOIN orders ON l_orderkey = o_orderkey GROUP BY l_shipmode";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn explain_lists_stages_exchanges_and_rules_without_running() {
    let cluster = tpch_cluster(3).await;
    let client = cluster.client().await.unwrap();
    let result = client.sql(&format!("EXPLAIN {REPORT}")).await.unwrap();
    assert_eq!(result.metrics.stages.len(), 0, "EXPLAIN runs nothing");
    let plans = texts(&result, "plan");
    let outputs = texts(&result, "output");
    assert!(
        outputs.iter().any(|o| o.starts_with("hash(")),
        "{outputs:?}"
    );
    assert!(
        plans
            .iter()
            .any(|p| p.contains("rules: ") && p.contains("worker_combine"))
    );
    assert!(plans.iter().any(|p| p.contains("ShuffleWriterExec")));
    let summary = plans.last().unwrap();
    assert!(
        summary.contains("naive plan would shuffle about"),
        "{summary}"
    );
    let stages = column::<UInt32Array>(&result, "stage");
    assert!(stages.iter().map(|a| a.len()).sum::<usize>() >= 4);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn explain_analyze_reports_per_stage_figures_and_the_job_total() {
    let cluster = tpch_cluster(3).await;
    let client = cluster.client().await.unwrap();
    let result = client
        .sql(&format!("EXPLAIN ANALYZE {REPORT}"))
        .await
        .unwrap();
    let plans = texts(&result, "plan");
    assert!(
        plans
            .iter()
            .filter(|p| p.contains("shuffle_bytes=") && p.contains("elapsed_ms="))
            .count()
            >= 3,
        "{plans:#?}"
    );
    let summary = plans.last().unwrap();
    let shuffled = result.metrics.shuffle_bytes;
    assert!(shuffled > 0);
    assert!(
        summary.contains(&format!("shuffled {shuffled} bytes")),
        "{summary} vs {shuffled}"
    );
    assert!(
        summary.contains("naive plan would shuffle about"),
        "{summary}"
    );
    cluster.shutdown().await;
}
