//! Spark SQL sessions (`tally.sql_dialect = spark`) on a real cluster: Spark's functions run
//! on the workers with Spark's semantics (the plan codec carries them), Spark's parser and
//! NULL ordering apply. The differential corpus against PySpark is
//! python/tests/test_spark_corpus.py; Hive-style partitions are in partitions.rs.

use arrow::array::{Array, RecordBatch};
use arrow::util::pretty::pretty_format_batches;
use tally_tests::harness::{run_with, tpch_cluster};

const SPARK: &[(&str, &str)] = &[("tally.sql_dialect", "spark")];

fn text(batches: &[RecordBatch]) -> String {
    pretty_format_batches(batches).unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn spark_functions_run_on_workers_with_sparks_semantics() {
    let cluster = tpch_cluster(3).await;
    let client = cluster.client().await.unwrap();
    // Spark's concat is NULL when an argument is; DataFusion's skips NULL arguments. The
    // count runs partially on the workers that scan nation, so they ran Spark's concat.
    let sql = "SELECT count(concat(CASE WHEN n_nationkey < 3 THEN NULL ELSE n_name END, '!')) AS n, \
               sum(n_nationkey) / 7 AS ratio, sum(n_nationkey) DIV 7 AS whole, \
               size(collect_list(n_regionkey)) AS listed, `n_regionkey` AS region \
               FROM nation GROUP BY n_regionkey ORDER BY region";
    let spark = run_with(&client, sql.replace("`", "").as_str(), SPARK).await;
    let answer = text(&spark.batches);
    assert!(
        answer.contains("| 4 | 7.142857142857143 | 7     | 5      | 0      |"),
        "{answer}"
    );
    assert!(
        answer.contains("| 3 | 6.714285714285714 | 6     | 5      | 1      |"),
        "{answer}"
    );
    let backquoted = run_with(&client, sql, SPARK).await;
    assert_eq!(text(&backquoted.batches), answer);

    let plain = run_with(
        &client,
        "SELECT count(concat(CASE WHEN n_nationkey < 3 THEN NULL ELSE n_name END, '!')) AS n \
         FROM nation",
        &[],
    )
    .await;
    assert!(
        text(&plain.batches).contains("| 25 |"),
        "DataFusion's concat skips NULLs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn spark_sessions_order_nulls_first_and_read_spark_dates() {
    let cluster = tpch_cluster(2).await;
    let client = cluster.client().await.unwrap();
    let sql = "SELECT CASE WHEN n_nationkey % 2 = 0 THEN NULL ELSE n_nationkey END AS k, \
               date_format(DATE '2026-11-05', 'yyyy-MM') AS month, \
               datediff(DATE '2026-11-05', DATE '2026-11-01') AS days \
               FROM nation WHERE n_nationkey < 4 ORDER BY k";
    let spark = run_with(&client, sql, SPARK).await;
    let all = arrow::compute::concat_batches(&spark.schema, &spark.batches).unwrap();
    let keys = all.column(0).clone();
    assert!(
        keys.is_null(0) && keys.is_null(1),
        "Spark sorts NULLs first: {}",
        text(&spark.batches)
    );
    let answer = text(&spark.batches);
    assert!(answer.contains("| 1 | 2026-11 | 4    |"), "{answer}");
    let unknown = client
        .sql_with_settings(
            "SELECT 1",
            &[("tally.sql_dialect".to_string(), "hive".to_string())].into(),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(
        unknown.contains("tally.sql_dialect = hive: use spark or datafusion"),
        "{unknown}"
    );
}
