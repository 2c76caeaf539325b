//! Workers under a memory limit: sorts and aggregations spill to disk and still answer
//! exactly; what cannot fit (a hash join's build side) fails with a clear resources-exhausted
//! error, and the worker goes on answering.

use tally_client::{ClientError, LocalClusterOptions};
use tally_tests::compare::assert_same_results;
use tally_tests::harness::{datafusion_answer, run_with, tpch_cluster_with};
use tonic::Code;

const MIB: usize = 1 << 20;

/// Sorts reserve this much for merging their spill files; the default (10 MiB) is more than
/// these small pools hold.
const SMALL_MERGE_RESERVATION: (&str, &str) = (
    "datafusion.execution.sort_spill_reservation_bytes",
    "262144",
);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sorts_and_aggregations_spill_under_a_small_limit_and_answer_exactly() {
    for (sql, ordered, limit) in [
        (
            "SELECT l_orderkey, l_linenumber, l_comment FROM lineitem \
             ORDER BY l_comment, l_orderkey, l_linenumber",
            true,
            4 * MIB,
        ),
        (
            "SELECT l_orderkey, l_partkey, count(*) AS n, sum(l_quantity) AS q, \
             max(l_comment) AS c FROM lineitem GROUP BY l_orderkey, l_partkey",
            false,
            2 * MIB,
        ),
    ] {
        let cluster = tpch_cluster_with(LocalClusterOptions {
            workers: 2,
            worker_memory_limit: limit,
            ..Default::default()
        })
        .await;
        let client = cluster.client().await.unwrap();
        // One final aggregation task per worker: 30,000 groups each.
        let settings = [
            SMALL_MERGE_RESERVATION,
            ("datafusion.execution.target_partitions", "2"),
        ];
        let result = run_with(&client, sql, &settings).await;
        assert_same_results(sql, &datafusion_answer(sql).await, &result.batches, ordered);
        let spilled: u64 = result.metrics.stages.iter().map(|s| s.spilled_bytes).sum();
        assert!(spilled > 0, "{sql}: nothing spilled: {:?}", result.metrics);
        eprintln!(
            "spilled {spilled} bytes under {} MiB per worker: {sql}",
            limit / MIB
        );
        cluster.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_query_that_cannot_fit_fails_cleanly_and_the_workers_answer_the_next() {
    let cluster = tpch_cluster_with(LocalClusterOptions {
        workers: 2,
        worker_memory_limit: MIB,
        ..Default::default()
    })
    .await;
    let client = cluster.client().await.unwrap();
    // A hash join holds its whole build side in memory: DataFusion cannot spill it.
    let sql = "SELECT count(*) FROM lineitem a JOIN lineitem b \
               ON a.l_orderkey = b.l_orderkey AND a.l_comment <> b.l_comment";
    let error = client
        .sql_with_settings(
            sql,
            // One join task holds the whole build side (60,000 rows, several MiB).
            &[
                ("tally.broadcast_threshold_bytes", "0"),
                ("datafusion.execution.target_partitions", "1"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .into(),
        )
        .await
        .expect_err("the join does not fit in 1 MiB");
    let ClientError::JobFailed { code, message, .. } = &error else {
        panic!("expected a failed job, got {error:?}");
    };
    assert_eq!(*code, Code::ResourceExhausted, "{message}");
    for part in [
        "ran out of memory",
        "1 MiB",
        "--memory-limit-mb",
        "worker w-",
    ] {
        assert!(message.contains(part), "{part:?} missing from: {message}");
    }
    assert!(!message.contains('\n'), "{message}");

    // The workers are up and answer the next query exactly.
    let sql = "SELECT n_regionkey, count(*) FROM nation GROUP BY n_regionkey";
    let result = run_with(&client, sql, &[]).await;
    assert_same_results(sql, &datafusion_answer(sql).await, &result.batches, false);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn joins_spill_as_sort_merge_joins_when_hash_joins_are_not_preferred() {
    let cluster = tpch_cluster_with(LocalClusterOptions {
        workers: 2,
        worker_memory_limit: 6 * MIB,
        ..Default::default()
    })
    .await;
    let client = cluster.client().await.unwrap();
    let sql = "SELECT count(*) AS n FROM lineitem a JOIN lineitem b \
               ON a.l_orderkey = b.l_orderkey AND a.l_comment <> b.l_comment";
    let settings = [
        SMALL_MERGE_RESERVATION,
        ("datafusion.optimizer.prefer_hash_join", "false"),
        ("tally.broadcast_threshold_bytes", "0"),
        ("datafusion.execution.target_partitions", "2"),
    ];
    let result = run_with(&client, sql, &settings).await;
    assert_same_results(sql, &datafusion_answer(sql).await, &result.batches, false);
    let join_stage = result
        .metrics
        .stages
        .iter()
        .find(|s| s.input_stages.len() == 2)
        .expect("a stage joining two inputs");
    assert!(
        join_stage.spilled_bytes > 0,
        "the sort-merge join spilled nothing: {:?}",
        result.metrics
    );
    cluster.shutdown().await;
}
