//! Bucketed tables: joins and aggregations on the bucket key run where the buckets are, and
//! only the answer moves.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use tally_client::LocalCluster;
use tally_client::tpch::generate_tpch_bucketed;
use tally_common::bucketing::BucketSpec;
use tally_tests::compare::assert_same_results;
use tally_tests::harness::{cluster_with_data_roots, datafusion_answer, run_with, tpch_dir};

const JOIN_BY_ORDER: &str = "SELECT o_orderkey, o_orderdate, sum(l_extendedprice) AS revenue, \
                             count(*) AS lines FROM orders JOIN lineitem ON l_orderkey = o_orderkey \
                             GROUP BY o_orderkey, o_orderdate";

/// TPC-H 0.01 with orders and lineitem in 6 buckets on the order key.
fn bucketed_tpch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        let spec = |column: &str| BucketSpec::new(vec![column.to_string()], 6).unwrap();
        let bucketing = BTreeMap::from([
            ("orders".to_string(), spec("o_orderkey")),
            ("lineitem".to_string(), spec("l_orderkey")),
        ]);
        generate_tpch_bucketed(0.01, &dir, 4, &bucketing).unwrap();
        dir
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn join_and_aggregation_on_the_bucket_key_shuffle_nothing() {
    let data = bucketed_tpch();
    let cluster = LocalCluster::start(3).await.unwrap();
    for table in ["orders", "lineitem"] {
        cluster
            .register_table(table, data.join(table).to_str().unwrap())
            .await
            .unwrap();
    }
    let client = cluster.client().await.unwrap();
    let expected = datafusion_answer(JOIN_BY_ORDER).await;

    let bucketed = run_with(&client, JOIN_BY_ORDER, &[]).await;
    assert_same_results("bucketed join", &expected, &bucketed.batches, false);
    assert_eq!(bucketed.metrics.shuffle_bytes, 0, "{:?}", bucketed.metrics);
    assert!(bucketed.metrics.result_bytes > 0, "the answer still moves");

    let naive = run_with(&client, JOIN_BY_ORDER, &[("tally.planner", "naive")]).await;
    assert_same_results("bucketed join, naive", &expected, &naive.batches, false);
    assert!(naive.metrics.shuffle_bytes > 0);

    let by_key = "SELECT l_orderkey, sum(l_quantity) FROM lineitem GROUP BY l_orderkey";
    let aggregated = run_with(&client, by_key, &[]).await;
    assert_same_results(
        by_key,
        &datafusion_answer(by_key).await,
        &aggregated.batches,
        false,
    );
    assert_eq!(
        aggregated.metrics.shuffle_bytes, 0,
        "{:?}",
        aggregated.metrics
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn create_table_as_select_writes_bucketed_tables_that_join_in_place() {
    let out = tempfile::tempdir().unwrap();
    let cluster = cluster_with_data_roots(3, &[out.path()]).await;
    for table in ["orders", "lineitem"] {
        cluster
            .register_table(table, tpch_dir().join(table).to_str().unwrap())
            .await
            .unwrap();
    }
    let client = cluster.client().await.unwrap();
    for (name, key, source) in [
        ("o", "o_orderkey", "orders"),
        ("l", "l_orderkey", "lineitem"),
    ] {
        let location = out.path().join(name);
        let sql = format!(
            "CREATE TABLE {name} WITH (bucket_by = '{key}', buckets = 4, location = '{}') \
             AS SELECT * FROM {source}",
            location.display()
        );
        let written = run_with(&client, &sql, &[]).await;
        assert_eq!(written.num_rows(), 4, "one row per bucket");
        assert_eq!(
            BucketSpec::read(&location).unwrap(),
            Some(BucketSpec::new(vec![key.to_string()], 4).unwrap())
        );
    }
    let tables = client.list_tables().await.unwrap();
    let o = tables
        .iter()
        .find(|t| t.name == "o")
        .expect("table o registered");
    assert_eq!(o.bucketing.as_deref(), Some("4 buckets by (o_orderkey)"));

    let sql = JOIN_BY_ORDER
        .replace("JOIN lineitem", "JOIN l")
        .replace("FROM orders", "FROM o");
    let result = run_with(&client, &sql, &[]).await;
    assert_same_results(
        "CTAS join",
        &datafusion_answer(JOIN_BY_ORDER).await,
        &result.batches,
        false,
    );
    assert_eq!(result.metrics.shuffle_bytes, 0, "{:?}", result.metrics);

    let error = client
        .sql("CREATE TABLE o WITH (bucket_by = 'o_orderkey', buckets = 4) AS SELECT * FROM orders")
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("already exists"), "{error}");
    cluster.shutdown().await;
}
