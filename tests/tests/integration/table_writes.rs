//! Tables made and written with SQL, as Spark and Hive users write them: `CREATE TABLE ...
//! PARTITIONED BY` (empty or AS SELECT), dynamic and static partition inserts, plain
//! `INSERT INTO` / `INSERT OVERWRITE`, and failed writes that leave the table as it was.

use std::collections::BTreeMap;
use std::path::Path;

use arrow::array::RecordBatch;
use arrow::util::pretty::pretty_format_batches;
use datafusion::prelude::SessionContext;
use tally_client::{Client, LocalCluster, LocalClusterOptions};
use tally_coordinator::CoordinatorConfig;
use tally_tests::harness::run_with;

const SPARK: &[(&str, &str)] = &[("tally.sql_dialect", "spark")];

fn text(batches: &[RecordBatch]) -> String {
    pretty_format_batches(batches).unwrap().to_string()
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    names
}

/// A 3-worker cluster that may read and write under `root`, making tables without a
/// location in `root/tables`.
async fn cluster(root: &Path) -> LocalCluster {
    LocalCluster::start_with(LocalClusterOptions {
        workers: 3,
        coordinator: CoordinatorConfig {
            data_roots: vec![root.to_path_buf()],
            table_dir: root.join("tables"),
            ..Default::default()
        },
        ..Default::default()
    })
    .await
    .expect("start local cluster")
}

/// `staged`: (ad, clicks, day, country) rows, with two days, as a registered Parquet file.
async fn stage(client: &Client, root: &Path) {
    let folder = root.join("staged");
    std::fs::create_dir_all(&folder).unwrap();
    SessionContext::new()
        .sql(
            "SELECT CAST(ad AS BIGINT) AS ad, CAST(clicks AS BIGINT) AS clicks, \
             CAST(day AS DATE) AS day, country FROM (VALUES \
             (1, 1, '2026-11-01', 'DE'), (2, 1, '2026-11-01', 'FR'), \
             (1, 10, '2026-11-02', 'DE'), (2, 10, '2026-11-02', 'DE')) AS t(ad, clicks, day, country)",
        )
        .await
        .unwrap()
        .write_parquet(folder.join("part-0.parquet").to_str().unwrap(), Default::default(), None)
        .await
        .unwrap();
    client
        .sql(&format!(
            "CREATE EXTERNAL TABLE staged STORED AS PARQUET LOCATION '{}'",
            folder.display()
        ))
        .await
        .unwrap();
}

/// Waits (a few seconds at most) for a failed job's staging folder in `dir` to be removed:
/// that happens once the job has ended, beside the answer to the client.
async fn no_staging_left(dir: &Path) {
    let staging = || -> Vec<String> {
        names(dir)
            .into_iter()
            .filter(|n| n.starts_with(".tally-staging"))
            .collect()
    };
    for _ in 0..50 {
        if staging().is_empty() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("staging folders left: {:?}", staging());
}

async fn answer(client: &Client, sql: &str) -> String {
    text(&run_with(client, sql, SPARK).await.batches)
}

/// The partition column `day` of `clicks` reads as the DATE it was declared.
async fn assert_day_is_a_date(client: &Client) {
    let sql = "SELECT arrow_typeof(day) AS t FROM clicks LIMIT 1";
    let typed = text(&run_with(client, sql, &[]).await.batches);
    assert!(typed.contains("Date32"), "{typed}");
}

const BY_DAY: &str =
    "SELECT day, count(*) AS n, sum(clicks) AS clicks FROM clicks GROUP BY day ORDER BY day";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_created_partitioned_table_takes_static_dynamic_and_plain_inserts() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let cluster = cluster(&root).await;
    let client = cluster.client().await.unwrap();
    stage(&client, &root).await;
    let table = root.join("clicks");
    run_with(
        &client,
        &format!(
            "CREATE TABLE clicks (day DATE, ad BIGINT, clicks BIGINT) USING parquet \
             PARTITIONED BY (day) LOCATION '{}'",
            table.display()
        ),
        SPARK,
    )
    .await;
    // Empty, with its declared columns.
    assert!(
        answer(&client, "SELECT count(*) AS n FROM clicks")
            .await
            .contains("| 0 |")
    );

    // No PARTITION clause: every partition column is dynamic, from the query's last column.
    run_with(
        &client,
        "INSERT INTO clicks SELECT ad, clicks, day FROM staged",
        SPARK,
    )
    .await;
    assert_eq!(
        names(&table),
        vec!["_tally_table.json", "day=2026-11-01", "day=2026-11-02"]
    );
    let first = answer(&client, BY_DAY).await;
    assert!(first.contains("| 2026-11-01 | 2 | 2      |"), "{first}");
    assert!(first.contains("| 2026-11-02 | 2 | 20     |"), "{first}");
    // The partition column went last, typed as declared.
    let columns = answer(&client, "SELECT * FROM clicks ORDER BY day, ad LIMIT 1").await;
    assert!(
        columns.contains("| ad | clicks | day        |"),
        "{columns}"
    );
    assert_day_is_a_date(&client).await;
    // Filters on the typed partition column still prune folders.
    let explained = answer(
        &client,
        "EXPLAIN SELECT sum(clicks) FROM clicks WHERE day = DATE '2026-11-02'",
    )
    .await;
    assert!(explained.contains("files=1"), "{explained}");

    // Dynamic overwrite replaces the partitions the query wrote (day 2, and a new day 3)
    // and keeps the others.
    run_with(
        &client,
        "INSERT OVERWRITE TABLE clicks PARTITION (day) \
         SELECT ad, clicks * 100, date_add(day, 1) FROM staged WHERE day = DATE '2026-11-01' \
         UNION ALL SELECT ad, 7, day FROM staged WHERE day = DATE '2026-11-02' AND ad = 1",
        SPARK,
    )
    .await;
    let dynamic = answer(&client, BY_DAY).await;
    assert!(dynamic.contains("| 2026-11-01 | 2 | 2      |"), "{dynamic}");
    assert!(dynamic.contains("| 2026-11-02 | 3 | 207    |"), "{dynamic}");
    assert!(!dynamic.contains("2026-11-03"), "{dynamic}");

    // A static value with INTO appends to that partition only.
    run_with(
        &client,
        "INSERT INTO TABLE clicks PARTITION (day = '2026-11-03') SELECT ad, 5 FROM staged WHERE ad = 2",
        SPARK,
    )
    .await;
    let appended = answer(&client, BY_DAY).await;
    assert!(
        appended.contains("| 2026-11-03 | 2 | 10     |"),
        "{appended}"
    );

    // Spark's static mode: an overwrite without static values empties the whole table.
    let mut static_mode = SPARK.to_vec();
    static_mode.push(("tally.partition_overwrite_mode", "static"));
    run_with(
        &client,
        "INSERT OVERWRITE TABLE clicks SELECT ad, clicks, DATE '2026-11-05' FROM staged WHERE ad = 1",
        &static_mode,
    )
    .await;
    let replaced = answer(&client, BY_DAY).await;
    assert!(
        replaced.contains("| 2026-11-05 | 2 | 11     |"),
        "{replaced}"
    );
    assert_eq!(
        replaced.lines().filter(|l| l.contains("| 2026-")).count(),
        1,
        "{replaced}"
    );

    // A failed insert (a NULL partition value) leaves the table as it was and no files.
    let failed = client
        .sql_with_settings(
            "INSERT INTO clicks SELECT ad, clicks, CASE WHEN ad = 2 THEN NULL ELSE day END FROM staged",
            &BTreeMap::from([("tally.sql_dialect".to_string(), "spark".to_string())]),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(failed.contains("partition column day is NULL"), "{failed}");
    assert_eq!(answer(&client, BY_DAY).await, replaced);
    no_staging_left(&root).await;

    // Wrong shapes are named before any job runs.
    let count = client
        .sql("INSERT INTO clicks SELECT ad FROM staged")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        count.contains("the query gives 1 columns, the table takes 3"),
        "{count}"
    );

    // The folder alone carries the table: registered again, it has its types.
    client.sql("DROP TABLE clicks").await.unwrap();
    client
        .sql(&format!(
            "CREATE EXTERNAL TABLE clicks STORED AS PARQUET LOCATION '{}'",
            table.display()
        ))
        .await
        .unwrap();
    assert_eq!(answer(&client, BY_DAY).await, replaced);
    assert_day_is_a_date(&client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn create_table_as_select_writes_partition_folders_and_plain_tables_take_inserts() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let cluster = cluster(&root).await;
    let client = cluster.client().await.unwrap();
    stage(&client, &root).await;

    // CTAS PARTITIONED BY: two levels, the partition columns moved last.
    run_with(
        &client,
        "CREATE TABLE daily USING parquet PARTITIONED BY (day, country) AS \
         SELECT day, country, ad, sum(clicks) AS clicks FROM staged GROUP BY day, country, ad",
        SPARK,
    )
    .await;
    let daily = root.join("tables").join("daily");
    assert_eq!(
        names(&daily),
        vec!["_tally_table.json", "day=2026-11-01", "day=2026-11-02"]
    );
    assert_eq!(
        names(&daily.join("day=2026-11-01")),
        vec!["country=DE", "country=FR"]
    );
    let rows = answer(&client, "SELECT * FROM daily ORDER BY day, country, ad").await;
    assert!(
        rows.contains("| ad | clicks | day        | country |"),
        "{rows}"
    );
    assert!(
        rows.contains("| 2  | 10     | 2026-11-02 | DE      |"),
        "{rows}"
    );
    let explained = answer(
        &client,
        "EXPLAIN SELECT sum(clicks) FROM daily WHERE country = 'FR'",
    )
    .await;
    assert!(explained.contains("files="), "{explained}");

    // Hive's form declares the partition column's type in PARTITIONED BY.
    let by_country = root.join("by_country");
    run_with(
        &client,
        &format!(
            "CREATE TABLE by_country (ad BIGINT, clicks BIGINT) PARTITIONED BY (country STRING) \
             STORED AS PARQUET LOCATION '{}'",
            by_country.display()
        ),
        SPARK,
    )
    .await;
    run_with(
        &client,
        "INSERT OVERWRITE TABLE by_country PARTITION (country = 'DE') \
         SELECT ad, clicks FROM staged WHERE country = 'DE'",
        SPARK,
    )
    .await;
    assert!(
        answer(
            &client,
            "SELECT country, sum(clicks) AS c FROM by_country GROUP BY country"
        )
        .await
        .contains("| DE      | 21 |")
    );

    // A plain CTAS in DataFusion's dialect: a Parquet folder in the table dir, written by
    // the workers; INSERT INTO appends, INSERT OVERWRITE replaces.
    let totals = "SELECT ad, clicks FROM totals ORDER BY ad, clicks";
    run_with(
        &client,
        "CREATE TABLE totals AS SELECT ad, sum(clicks) AS clicks FROM staged GROUP BY ad",
        &[],
    )
    .await;
    assert!(
        names(&root.join("tables").join("totals"))
            .iter()
            .any(|n| n.ends_with(".parquet"))
    );
    run_with(
        &client,
        "INSERT INTO totals SELECT ad, 0 FROM staged WHERE ad = 1 AND clicks = 1",
        &[],
    )
    .await;
    let appended = answer(&client, totals).await;
    assert!(
        appended.contains("| 1  | 0      |") && appended.contains("| 1  | 11     |"),
        "{appended}"
    );
    run_with(
        &client,
        "INSERT OVERWRITE totals SELECT 9 AS a, 9 AS b",
        &[],
    )
    .await;
    let overwritten = answer(&client, totals).await;
    assert!(overwritten.contains("| 9  | 9      |"), "{overwritten}");
    assert!(!overwritten.contains("| 1  |"), "{overwritten}");

    // Names already taken: refused, or skipped with IF NOT EXISTS.
    let taken = client
        .sql("CREATE TABLE totals AS SELECT 1 AS a")
        .await
        .unwrap_err()
        .to_string();
    assert!(taken.contains("already exists"), "{taken}");
    run_with(
        &client,
        "CREATE TABLE IF NOT EXISTS totals AS SELECT 1 AS a",
        &[],
    )
    .await;
    assert!(answer(&client, totals).await.contains("| 9  | 9      |"));

    // A CTAS whose job fails registers nothing and leaves no folder.
    let failed = client
        .sql_with_settings(
            "CREATE TABLE broken USING parquet PARTITIONED BY (day) AS \
             SELECT ad, CASE WHEN ad = 2 THEN NULL ELSE day END AS day FROM staged",
            &BTreeMap::from([("tally.sql_dialect".to_string(), "spark".to_string())]),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(failed.contains("partition column day is NULL"), "{failed}");
    assert!(!root.join("tables").join("broken").exists());
    assert!(client.sql("SELECT * FROM broken").await.is_err());
    no_staging_left(&root.join("tables")).await;
}
