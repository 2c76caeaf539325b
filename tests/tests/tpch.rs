//! All 22 TPC-H queries on 1 coordinator + 3 workers over real sockets give the answer
//! single-process DataFusion gives on the same files.

use tally_client::tpch::TPCH_QUERIES;
use tally_tests::compare::{assert_same_results, query_is_ordered};
use tally_tests::harness::{datafusion_answer, tpch_cluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn all_22_tpch_queries_match_single_process_datafusion() {
    let cluster = tpch_cluster(3).await;
    let client = cluster.client().await.unwrap();
    let mut multi_stage = 0;
    for (name, sql) in TPCH_QUERIES {
        let expected = datafusion_answer(sql).await;
        let actual = client
            .sql(sql)
            .await
            .unwrap_or_else(|e| panic!("{name} failed on Tally: {e}"));
        assert_same_results(name, &expected, &actual.batches, query_is_ordered(sql));
        if actual.metrics.stages.len() > 1 {
            multi_stage += 1;
        }
    }
    assert_eq!(
        multi_stage, 22,
        "every TPC-H query exchanges data between stages"
    );
    cluster.shutdown().await;
}
