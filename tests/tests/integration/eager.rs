//! Eager aggregation on TPC-H: the distributed plans where partial aggregates go below joins
//! (snapshots of EXPLAIN), their answers, and the bytes they move against the same plans
//! with the rule off.

use tally_client::Client;
use tally_client::tpch::TPCH_QUERIES;
use tally_tests::compare::{assert_same_results, query_is_ordered};
use tally_tests::harness::{datafusion_answer, explained_stages, run_with, tpch_cluster};

fn query(name: &str) -> &'static str {
    TPCH_QUERIES.iter().find(|(n, _)| *n == name).unwrap().1
}

async fn explain(client: &Client, name: &str, settings: &[(&str, &str)]) -> String {
    let sql = format!("EXPLAIN {}", query(name));
    explained_stages(&run_with(client, &sql, settings).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eager_aggregation_plans_of_tpch_q3_q10_q18() {
    let cluster = tpch_cluster(3).await;
    let client = cluster.client().await.unwrap();
    // Broadcast joins off, as the large joins of scale 1 are: the pushed partial aggregates
    // sit below the exchanges that feed the joins. No minimum split: every scan runs as one
    // task per partition, as the large tables of scale 1 do.
    let partitioned = [
        ("tally.broadcast_threshold_bytes", "0"),
        ("datafusion.optimizer.repartition_file_min_size", "0"),
    ];
    for name in ["q3", "q10", "q18"] {
        let plan = explain(&client, name, &partitioned).await;
        assert!(plan.contains("eager_aggregation"), "{name}\n{plan}");
        insta::assert_snapshot!(format!("{name}_partitioned"), plan);
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eager_aggregation_keeps_answers_and_moves_fewer_bytes() {
    let cluster = tpch_cluster(3).await;
    let client = cluster.client().await.unwrap();
    let partitioned = ("tally.broadcast_threshold_bytes", "0");
    for name in ["q3", "q10", "q18"] {
        let sql = query(name);
        let expected = datafusion_answer(sql).await;
        let eager = run_with(&client, sql, &[partitioned]).await;
        let lazy = run_with(
            &client,
            sql,
            &[partitioned, ("tally.eager_aggregation", "false")],
        )
        .await;
        assert_same_results(name, &expected, &eager.batches, query_is_ordered(sql));
        println!(
            "{name}: eager {} bytes, rule off {} bytes",
            eager.metrics.shuffle_bytes, lazy.metrics.shuffle_bytes
        );
        assert!(
            eager.metrics.shuffle_bytes < lazy.metrics.shuffle_bytes,
            "{name}: eager {} bytes, rule off {} bytes",
            eager.metrics.shuffle_bytes,
            lazy.metrics.shuffle_bytes
        );
    }
    cluster.shutdown().await;
}
