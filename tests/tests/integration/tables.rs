//! Tables from Parquet folders and CSV files, registered by flag or by SQL.

use arrow::array::Int64Array;
use tally_tests::harness::{cluster_with_data_roots, tpch_dir};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn csv_and_parquet_tables_join_and_can_be_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = cluster_with_data_roots(2, &[tpch_dir()]).await;
    let csv = dir.path().join("regions.csv");
    std::fs::write(&csv, "r_regionkey,label\n0,zero\n1,one\n2,two\n").unwrap();
    cluster
        .register_table("labels", csv.to_str().unwrap())
        .await
        .unwrap();
    let client = cluster.client().await.unwrap();
    let nation = tpch_dir().join("nation");
    client
        .sql(&format!(
            "CREATE EXTERNAL TABLE n STORED AS PARQUET LOCATION '{}'",
            nation.display()
        ))
        .await
        .unwrap();

    let result = client
        .sql(
            "SELECT count(*) AS nations FROM n JOIN labels ON n_regionkey = r_regionkey \
             WHERE label <> 'two'",
        )
        .await
        .unwrap();
    let count = result.batches[0]
        .column(0)
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap()
        .value(0);
    assert_eq!(count, 10, "regions 0 and 1 hold 5 nations each");

    let names: Vec<String> = client
        .list_tables()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, vec!["labels", "n"]);
    client.sql("DROP TABLE n").await.unwrap();
    let error = client.sql("SELECT * FROM n").await.unwrap_err().to_string();
    assert!(error.contains("n"), "{error}");
    let error = client.sql("DROP TABLE n").await.unwrap_err().to_string();
    assert!(error.contains("no table named n"), "{error}");
    cluster.shutdown().await;
}
