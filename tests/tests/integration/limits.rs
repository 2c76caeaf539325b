//! Message size limits are set explicitly on every server and client (`MAX_MESSAGE_BYTES`),
//! so plans far past gRPC's 4 MiB default still travel: the SQL to the coordinator, the stage
//! plans to the workers, the job status back. (Oversized requests are in `bad_input.rs`.)

use tally_tests::compare::assert_same_results;
use tally_tests::harness::{datafusion_answer, run_with, tpch_cluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn plans_past_the_grpc_default_limit_run_and_answer_exactly() {
    let cluster = tpch_cluster(2).await;
    let client = cluster.client().await.unwrap();

    // A 120,000-value IN list: over 4 MiB of SQL, and more in every stage plan.
    let values: Vec<String> = (0..120_000)
        .map(|i| format!("'comment that matches nothing {i}'"))
        .chain(["'furiously'".to_string()])
        .collect();
    let in_list = format!(
        "SELECT count(*) AS n FROM lineitem WHERE l_comment IN ({}) OR l_orderkey < 100",
        values.join(", ")
    );
    assert!(in_list.len() > 4 << 20, "{} bytes", in_list.len());

    // 300 branches of UNION ALL, each its own scan.
    let union = (0..300)
        .map(|i| {
            format!(
                "SELECT n_name, {i} AS branch FROM nation WHERE n_nationkey = {}",
                i % 25
            )
        })
        .collect::<Vec<_>>()
        .join(" UNION ALL ");

    // An expression as deep as Tally accepts (1,000 operators) over a column, which the
    // planner cannot fold.
    let deep = format!(
        "SELECT n_nationkey, {} AS total FROM nation",
        vec!["n_nationkey"; 1001].join(" + ")
    );

    for sql in [&in_list, &union, &deep] {
        let result = run_with(&client, sql, &[]).await;
        assert_same_results(sql, &datafusion_answer(sql).await, &result.batches, false);
    }
    cluster.shutdown().await;
}
