//! Hive-style partitioned tables: `name=value` folders are columns whose filters prune
//! folders, and `INSERT [OVERWRITE] ... PARTITION (...) SELECT` replaces or extends exactly one
//! partition, which a concurrent reader sees whole before or after, never a mix.

use std::path::Path;

use arrow::array::RecordBatch;
use arrow::util::pretty::pretty_format_batches;
use datafusion::prelude::SessionContext;
use tally_client::Client;
use tally_tests::harness::{cluster_with_data_roots, run_with};

const SPARK: &[(&str, &str)] = &[("tally.sql_dialect", "spark")];

fn text(batches: &[RecordBatch]) -> String {
    pretty_format_batches(batches).unwrap().to_string()
}

/// Writes `rows` (ad, clicks) as one Parquet file in `folder`.
async fn write_rows(folder: &Path, rows: &[(i64, i64)]) {
    std::fs::create_dir_all(folder).unwrap();
    let values: Vec<String> = rows.iter().map(|(a, c)| format!("({a}, {c})")).collect();
    SessionContext::new()
        .sql(&format!(
            "SELECT CAST(ad AS BIGINT) AS ad, CAST(clicks AS BIGINT) AS clicks FROM (VALUES {}) AS t(ad, clicks)",
            values.join(", ")
        ))
        .await
        .unwrap()
        .write_parquet(folder.join("part-0.parquet").to_str().unwrap(), Default::default(), None)
        .await
        .unwrap();
}

async fn register(client: &Client, name: &str, path: &Path) {
    client
        .sql(&format!(
            "CREATE EXTERNAL TABLE {name} STORED AS PARQUET LOCATION '{}'",
            path.display()
        ))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hive_partition_folders_are_columns_and_filters_prune_folders() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let table = root.join("clicks");
    for (day, clicks) in [("2026-11-01", 1), ("2026-11-02", 10), ("2026-11-03", 100)] {
        write_rows(
            &table.join(format!("day={day}")),
            &[(1, clicks), (2, clicks)],
        )
        .await;
    }
    let cluster = cluster_with_data_roots(2, &[&root]).await;
    let client = cluster.client().await.unwrap();
    register(&client, "clicks", &table).await;
    let answer = run_with(
        &client,
        "SELECT day, sum(clicks) AS clicks FROM clicks GROUP BY day ORDER BY day",
        SPARK,
    )
    .await;
    let answer = text(&answer.batches);
    assert!(answer.contains("| 2026-11-02 | 20     |"), "{answer}");
    assert!(answer.contains("| 2026-11-03 | 200    |"), "{answer}");

    let files = |sql: &'static str| {
        let client = client.clone();
        async move {
            let explained = text(&run_with(&client, sql, SPARK).await.batches);
            explained
                .split("files=")
                .skip(1)
                .map(|rest| {
                    rest.chars()
                        .take_while(char::is_ascii_digit)
                        .collect::<String>()
                })
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        files("EXPLAIN SELECT sum(clicks) FROM clicks").await,
        vec!["3"]
    );
    assert_eq!(
        files("EXPLAIN SELECT sum(clicks) FROM clicks WHERE day = '2026-11-02'").await,
        vec!["1"]
    );
    let one_day = run_with(
        &client,
        "SELECT sum(clicks) AS clicks FROM clicks WHERE day >= '2026-11-02' AND day < '2026-11-03'",
        SPARK,
    )
    .await;
    assert!(text(&one_day.batches).contains("| 20     |"));
}

const BY_DAY: &str =
    "SELECT day, count(*) AS n, sum(clicks) AS clicks FROM clicks GROUP BY day ORDER BY day";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overwriting_a_partition_is_seen_whole_by_concurrent_readers() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let table = root.join("clicks");
    write_rows(&table.join("day=2026-11-01"), &[(1, 1), (2, 1)]).await;
    write_rows(&table.join("day=2026-11-02"), &[(1, 10), (2, 10)]).await;
    write_rows(&root.join("staged"), &[(1, 1000), (2, 1000), (3, 1000)]).await;
    let cluster = cluster_with_data_roots(3, &[&root]).await;
    let client = cluster.client().await.unwrap();
    register(&client, "clicks", &table).await;
    register(&client, "staged", &root.join("staged")).await;
    let old = text(&run_with(&client, BY_DAY, SPARK).await.batches);
    assert!(old.contains("| 2026-11-02 | 2 | 20     |"), "{old}");

    // A reader queries the table over and over while the partition is overwritten.
    let reader = {
        let client = client.clone();
        tokio::spawn(async move {
            let mut seen = Vec::new();
            for _ in 0..40 {
                seen.push(text(&run_with(&client, BY_DAY, SPARK).await.batches));
            }
            seen
        })
    };
    run_with(
        &client,
        "INSERT OVERWRITE TABLE clicks PARTITION (day = '2026-11-02') SELECT ad, clicks FROM staged",
        SPARK,
    )
    .await;
    let new = text(&run_with(&client, BY_DAY, SPARK).await.batches);
    assert!(
        new.contains("| 2026-11-01 | 2 | 2      |"),
        "the other partition is untouched: {new}"
    );
    assert!(new.contains("| 2026-11-02 | 3 | 3000   |"), "{new}");
    for answer in reader.await.unwrap() {
        assert!(
            answer == old || answer == new,
            "a reader saw a mix:\n{answer}"
        );
    }

    // INTO adds files to a partition, or makes a new one.
    run_with(
        &client,
        "INSERT INTO TABLE clicks PARTITION (day = '2026-11-02') SELECT ad, 1 FROM staged WHERE ad = 1",
        SPARK,
    )
    .await;
    run_with(
        &client,
        "INSERT INTO clicks PARTITION (day = '2026-11-03') SELECT ad, clicks * 2 FROM staged",
        &[],
    )
    .await;
    let after = text(&run_with(&client, BY_DAY, SPARK).await.batches);
    assert!(after.contains("| 2026-11-02 | 4 | 3001   |"), "{after}");
    assert!(after.contains("| 2026-11-03 | 3 | 6000   |"), "{after}");

    let wrong = client
        .sql("INSERT OVERWRITE TABLE clicks PARTITION (hour = '1') SELECT ad, clicks FROM staged")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        wrong.contains("PARTITION names (hour), the table is partitioned by (day)"),
        "{wrong}"
    );
    let leftovers: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with(".tally-staging"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
