//! The shuffle-minimizing planner moves fewer bytes between workers than the naive plan
//! (raw rows hash-shuffled for every join and aggregation), measured on the same cluster.

use tally_client::tpch::TPCH_QUERIES;
use tally_client::{Client, JobMetrics};
use tally_tests::harness::{run_with, tpch_cluster};

async fn shuffle_bytes(client: &Client, sql: &str, settings: &[(&str, &str)]) -> JobMetrics {
    run_with(client, sql, settings).await.metrics
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn minimized_plans_shuffle_fewer_bytes_than_naive_plans() {
    let cluster = tpch_cluster(3).await;
    let client = cluster.client().await.unwrap();
    for name in ["q1", "q3", "q5", "q10", "q12", "q18"] {
        let sql = TPCH_QUERIES.iter().find(|(n, _)| *n == name).unwrap().1;
        let minimized = shuffle_bytes(&client, sql, &[]).await;
        let naive = shuffle_bytes(&client, sql, &[("tally.planner", "naive")]).await;
        assert!(naive.shuffle_bytes > 0, "{name}: naive plan moved nothing");
        assert!(
            minimized.shuffle_bytes < naive.shuffle_bytes,
            "{name}: minimized {} bytes, naive {} bytes",
            minimized.shuffle_bytes,
            naive.shuffle_bytes
        );
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn worker_combine_sends_fewer_partial_rows_than_one_per_task() {
    let cluster = tpch_cluster(3).await;
    let client = cluster.client().await.unwrap();
    // Few groups, many tasks: each worker holds several tasks' partial states.
    let sql = "SELECT l_shipmode, sum(l_quantity) FROM lineitem GROUP BY l_shipmode";
    let hash = [("tally.final_gather_max_groups", "0")];
    let combined = shuffle_bytes(&client, sql, &hash).await;
    let uncombined =
        shuffle_bytes(&client, sql, &[hash[0], ("tally.worker_combine", "false")]).await;
    assert!(
        combined.shuffle_rows < uncombined.shuffle_rows,
        "combined {} rows, uncombined {} rows",
        combined.shuffle_rows,
        uncombined.shuffle_rows
    );
    assert!(combined.shuffle_bytes < uncombined.shuffle_bytes);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn compression_shrinks_what_crosses_the_wire() {
    let cluster = tpch_cluster(3).await;
    let client = cluster.client().await.unwrap();
    let sql = "SELECT o_orderkey, o_comment, l_comment FROM orders \
               JOIN lineitem ON l_orderkey = o_orderkey WHERE l_quantity > 45";
    let no_broadcast = ("tally.broadcast_threshold_bytes", "0");
    let plain = shuffle_bytes(&client, sql, &[no_broadcast, ("tally.compression", "none")]).await;
    let lz4 = shuffle_bytes(&client, sql, &[no_broadcast, ("tally.compression", "lz4")]).await;
    let zstd = shuffle_bytes(&client, sql, &[no_broadcast, ("tally.compression", "zstd")]).await;
    assert_eq!(plain.shuffle_rows, lz4.shuffle_rows);
    assert!(
        lz4.shuffle_bytes < plain.shuffle_bytes,
        "lz4 {lz4:?} plain {plain:?}"
    );
    assert!(zstd.shuffle_bytes < plain.shuffle_bytes);
    assert!(lz4.shuffle_uncompressed_bytes > 0);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broadcast_side_crosses_once_per_worker_not_once_per_task() {
    let cluster = tpch_cluster(3).await;
    let client = cluster.client().await.unwrap();
    // nation is tiny: broadcast to the lineitem-side tasks (6 of them on 3 workers: with no
    // minimum split every scan runs as one task per partition, as larger tables would).
    let sql = "SELECT n_name, count(*) FROM supplier JOIN nation ON s_nationkey = n_nationkey \
               JOIN lineitem ON l_suppkey = s_suppkey GROUP BY n_name";
    let settings = [
        ("tally.compression", "none"),
        ("datafusion.optimizer.repartition_file_min_size", "0"),
    ];
    let metrics = shuffle_bytes(&client, sql, &settings).await;
    let broadcast: Vec<_> = metrics
        .stages
        .iter()
        .filter(|s| s.rules.iter().any(|r| r.starts_with("broadcast")))
        .collect();
    assert!(!broadcast.is_empty(), "no broadcast join: {metrics:?}");
    for stage in broadcast {
        // Each worker but the producer's fetches each piece once: at most (workers - 1) copies,
        // where once per task would be up to one per lineitem scan task.
        assert!(stage.shuffle_rows <= 2 * stage.output_rows, "{stage:?}");
        assert!(stage.shuffle_rows > 0, "{stage:?}");
    }
    cluster.shutdown().await;
}
