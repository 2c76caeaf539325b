//! All 22 TPC-H queries on 1 coordinator + 3 workers over real sockets give the answer
//! single-process DataFusion gives on the same files, with the shuffle-minimizing planner
//! and with the naive one.

use std::collections::BTreeMap;

use tally_client::tpch::TPCH_QUERIES;
use tally_tests::compare::{assert_same_results, query_is_ordered};
use tally_tests::harness::{datafusion_answer, tpch_cluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn all_22_tpch_queries_match_single_process_datafusion_in_both_planner_modes() {
    let cluster = tpch_cluster(3).await;
    let client = cluster.client().await.unwrap();
    for planner in ["minimized", "naive"] {
        let settings = BTreeMap::from([("tally.planner".to_string(), planner.to_string())]);
        let mut multi_stage = 0;
        for (name, sql) in TPCH_QUERIES {
            let expected = datafusion_answer(sql).await;
            let actual = client
                .sql_with_settings(sql, &settings)
                .await
                .unwrap_or_else(|e| panic!("{name} ({planner}) failed on Tally: {e}"));
            let label = format!("{name} ({planner})");
            assert_same_results(&label, &expected, &actual.batches, query_is_ordered(sql));
            if actual.metrics.stages.len() > 1 {
                multi_stage += 1;
            }
        }
        assert_eq!(
            multi_stage, 22,
            "every TPC-H query exchanges data between stages"
        );
    }
    cluster.shutdown().await;
}
