//! Shuffle metrics: a hash exchange moves bytes between distinct workers over Flight, and
//! the job reports them for the stage that produced them.

use std::collections::BTreeMap;

use tally_client::LocalCluster;
use tally_tests::harness::tpch_cluster;

const GROUP_BY_ORDER: &str = "SELECT l_orderkey, sum(l_quantity) AS q FROM lineitem \
                              GROUP BY l_orderkey ORDER BY l_orderkey LIMIT 5";

/// The naive planner hash-shuffles raw rows for every aggregation. With no minimum split,
/// the scan runs as one task per partition (6 on 3 workers), as a larger table would.
fn naive() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("tally.planner".to_string(), "naive".to_string()),
        (
            "datafusion.optimizer.repartition_file_min_size".to_string(),
            "0".to_string(),
        ),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hash_exchange_reports_bytes_that_crossed_between_workers() {
    let cluster = tpch_cluster(3).await;
    let client = cluster.client().await.unwrap();
    let result = client
        .sql_with_settings(GROUP_BY_ORDER, &naive())
        .await
        .unwrap();
    assert_eq!(result.num_rows(), 5);

    let metrics = &result.metrics;
    let hashed = metrics
        .stages
        .iter()
        .find(|s| s.output.starts_with("hash("))
        .expect("a stage that hash-partitions its output");
    assert!(hashed.tasks >= 3, "the scan runs as several tasks");
    // Only reads from another worker count (a worker reads its own spool from disk), so
    // bytes here prove that data crossed between distinct workers over Flight.
    assert!(hashed.shuffle_bytes > 0, "stage {hashed:?} moved nothing");
    assert!(hashed.shuffle_rows > 0);
    assert!(hashed.shuffle_rows <= hashed.output_rows);
    assert_eq!(
        metrics.shuffle_bytes,
        metrics.stages.iter().map(|s| s.shuffle_bytes).sum::<u64>()
    );
    assert!(metrics.result_bytes > 0);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_worker_shuffles_nothing_over_the_network() {
    let cluster = tpch_cluster(1).await;
    let client = cluster.client().await.unwrap();
    let result = client
        .sql_with_settings(GROUP_BY_ORDER, &naive())
        .await
        .unwrap();
    assert_eq!(result.num_rows(), 5);
    assert_eq!(result.metrics.shuffle_bytes, 0, "{:?}", result.metrics);
    assert!(result.metrics.stages.len() > 1);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_answers_after_bad_queries() {
    let cluster = tpch_cluster(2).await;
    let client = cluster.client().await.unwrap();
    for (sql, expected) in [
        ("SELEC 1", "SELEC"),
        ("SELECT * FROM no_such_table", "no_such_table"),
        ("SELECT no_such_column FROM nation", "no_such_column"),
        (
            "CREATE EXTERNAL TABLE t STORED AS PARQUET LOCATION '/no/such/path'",
            "/no/such/path",
        ),
        ("", "empty SQL"),
    ] {
        let error = client.sql(sql).await.expect_err(sql).to_string();
        assert!(error.contains(expected), "{sql}: {error}");
        assert!(!error.contains('\n'), "{sql}: error spans lines: {error}");
    }
    let result = client.sql("SELECT count(*) FROM nation").await.unwrap();
    assert_eq!(result.num_rows(), 1);
    cluster.shutdown().await;
}

#[tokio::test]
async fn local_cluster_needs_a_worker() {
    let error = LocalCluster::start(0)
        .await
        .err()
        .expect("zero workers refused");
    assert!(error.to_string().contains("at least one worker"));
}
