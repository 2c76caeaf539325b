//! Data-quality checks and profiling (`tally check`, `tally profile`): every kind of check
//! passing and failing on a small table with the observed values exact, all checks of a
//! table as one distributed job, the profile's figures, and the command's output and exit
//! codes (0 passed, 1 a check failed, 2 the checks could not run).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use datafusion::prelude::{ParquetReadOptions, SessionContext};
use tally_client::quality::{
    ATTACHED_FILE, CheckResult, QUANTILES, check_table, parse_expectations, profile_table,
    table_info,
};
use tally_client::{JobState, LocalCluster};
use tally_tests::harness::{cluster_with_data_roots, tally_binary};

/// The latest `ts` of the table, 2026-11-02T12:00:00Z, in Unix seconds.
const LATEST_TS: i64 = 1_793_620_800;

/// `orders`: (id, region, revenue, ts), six rows in two Parquet files, so the check's scan
/// runs as two tasks. Id 5 appears twice, one region and one revenue are NULL, one revenue is
/// negative and one region is not eu or us.
async fn write_orders(folder: &Path) {
    std::fs::create_dir_all(folder).unwrap();
    let parts = [
        "(1, 'eu', 10.0, '2026-11-01T10:00:00'), (2, 'us', 20.0, '2026-11-01T11:00:00'), \
         (3, 'eu', NULL, '2026-11-01T12:00:00')",
        "(4, 'apac', -5.0, '2026-11-02T09:00:00'), (5, NULL, 30.0, '2026-11-02T12:00:00'), \
         (5, 'us', 40.0, '2026-11-02T11:00:00')",
    ];
    for (i, rows) in parts.iter().enumerate() {
        SessionContext::new()
            .sql(&format!(
                "SELECT CAST(id AS BIGINT) AS id, CAST(region AS VARCHAR) AS region, \
                 CAST(revenue AS DOUBLE) AS revenue, CAST(ts AS TIMESTAMP) AS ts \
                 FROM (VALUES {rows}) AS t(id, region, revenue, ts)"
            ))
            .await
            .unwrap()
            .write_parquet(
                folder.join(format!("part-{i}.parquet")).to_str().unwrap(),
                Default::default(),
                None,
            )
            .await
            .unwrap();
    }
}

async fn orders_cluster(root: &Path) -> LocalCluster {
    write_orders(&root.join("orders")).await;
    let cluster = cluster_with_data_roots(3, &[root]).await;
    cluster
        .register_table("orders", root.join("orders").to_str().unwrap())
        .await
        .unwrap();
    cluster
}

/// Scan splits of at most 1000 bytes: each of the two small files is its own scan task, as
/// the parts of a large table are, so the aggregates run partial on the workers first.
fn one_task_per_file() -> BTreeMap<String, String> {
    BTreeMap::from([("tally.split_bytes".to_string(), "1000".to_string())])
}

const EVERY_KIND: &str = r#"[
  {"not_null": ["id", "region"]},
  {"unique": ["id"]},
  {"unique": ["region"]},
  {"unique": ["id", "region"], "name": "id_region_key"},
  {"accepted_values": {"column": "region", "values": ["eu", "us"]}},
  {"accepted_values": {"column": "region", "values": ["eu", "us", "apac"]}, "name": "known_regions"},
  {"range": {"column": "revenue", "min": 0}},
  {"range": {"column": "id", "min": 1, "max": 5}, "name": "id_range"},
  {"row_count": {"min": 1, "max": 10}},
  {"row_count": {"min": 10}, "name": "at_least_ten"},
  {"freshness": {"column": "ts", "max_age_seconds": 3600}},
  {"freshness": {"column": "ts", "max_age_seconds": 60}, "name": "fresh_within_a_minute"},
  {"sql": {"name": "positive_revenue", "predicate": "revenue >= 0"}},
  {"sql": {"name": "positive_id", "predicate": "id > 0"}}
]"#;

fn verdict(c: &CheckResult) -> (&str, &str, &str, &str, bool) {
    (&c.name, &c.kind, &c.observed, &c.expected, c.passed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_kind_of_check_passes_and_fails_with_exact_observations_in_one_job() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let cluster = orders_cluster(&root).await;
    let client = cluster.client().await.unwrap();
    let table = table_info(&client, "orders").await.unwrap();
    let checks = parse_expectations(EVERY_KIND, "every_kind.json").unwrap();

    let jobs_before = client.list_jobs().await.unwrap();
    let report = check_table(
        &client,
        &table,
        &checks,
        LATEST_TS + 600,
        &one_task_per_file(),
    )
    .await
    .unwrap();
    let jobs_after = client.list_jobs().await.unwrap();

    let verdicts: Vec<_> = report.checks.iter().map(verdict).collect();
    assert_eq!(
        verdicts,
        vec![
            (
                "not_null(id)",
                "not_null",
                "0 NULL rows",
                "0 NULL rows",
                true
            ),
            (
                "not_null(region)",
                "not_null",
                "1 NULL row",
                "0 NULL rows",
                false
            ),
            (
                "unique(id)",
                "unique",
                "1 duplicate row",
                "0 duplicate rows",
                false
            ),
            // NULL is a key value like any other: eu, us, apac and NULL are 4 of 6 rows.
            (
                "unique(region)",
                "unique",
                "2 duplicate rows",
                "0 duplicate rows",
                false
            ),
            (
                "id_region_key",
                "unique",
                "0 duplicate rows",
                "0 duplicate rows",
                true
            ),
            (
                "accepted_values(region)",
                "accepted_values",
                "1 row with other values",
                "one of eu, us",
                false
            ),
            (
                "known_regions",
                "accepted_values",
                "0 rows with other values",
                "one of eu, us, apac",
                true
            ),
            (
                "range(revenue)",
                "range",
                "1 row outside (min -5, max 40)",
                ">= 0",
                false
            ),
            (
                "id_range",
                "range",
                "0 rows outside (min 1, max 5)",
                "between 1 and 5",
                true
            ),
            ("row_count", "row_count", "6 rows", "between 1 and 10", true),
            ("at_least_ten", "row_count", "6 rows", ">= 10", false),
            (
                "freshness(ts)",
                "freshness",
                "latest 2026-11-02T12:00:00, 600 s old",
                "at most 3600 s old",
                true
            ),
            (
                "fresh_within_a_minute",
                "freshness",
                "latest 2026-11-02T12:00:00, 600 s old",
                "at most 60 s old",
                false
            ),
            (
                "positive_revenue",
                "sql",
                "2 rows false or NULL",
                "true for every row",
                false
            ),
            (
                "positive_id",
                "sql",
                "0 rows false or NULL",
                "true for every row",
                true
            ),
        ]
    );
    assert!(!report.passed);
    assert_eq!(report.rows, 6);

    // One job, with the scan of both files as parallel tasks under partial aggregates.
    assert_eq!(jobs_after.len(), jobs_before.len() + 1, "exactly one job");
    let job = jobs_after
        .iter()
        .find(|j| j.job_id.to_string() == report.job_id)
        .expect("the check's job is listed");
    assert_eq!(job.state, JobState::Succeeded);
    assert!(job.sql.starts_with("SELECT count(*) AS q0"), "{}", job.sql);
    assert!(
        job.stages.len() >= 2,
        "partial and final aggregates: {job:?}"
    );
    // Each scan task sends one row: its partial aggregates, not the table's rows.
    assert!(
        job.stages
            .iter()
            .any(|s| s.tasks_total >= 2 && s.output_rows == u64::from(s.tasks_total)),
        "the scan runs as parallel tasks with partial aggregates: {:?}",
        job.stages
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unknown_column_or_a_bad_predicate_is_an_error_not_a_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let cluster = orders_cluster(&root).await;
    let client = cluster.client().await.unwrap();
    let table = table_info(&client, "orders").await.unwrap();
    let jobs_before = client.list_jobs().await.unwrap().len();

    let unknown = parse_expectations(r#"[{"not_null": ["nope"]}]"#, "f").unwrap();
    let error = check_table(&client, &table, &unknown, 0, &BTreeMap::new())
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "check not_null(nope): table orders has no column \"nope\" (its columns: id, region, \
         revenue, ts)"
    );
    assert_eq!(
        client.list_jobs().await.unwrap().len(),
        jobs_before,
        "no job"
    );

    let freshness = parse_expectations(
        r#"[{"freshness": {"column": "region", "max_age_seconds": 1}}]"#,
        "f",
    )
    .unwrap();
    let error = check_table(&client, &table, &freshness, 0, &BTreeMap::new())
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("freshness needs a timestamp or a date"),
        "{error}"
    );

    let predicate =
        parse_expectations(r#"[{"sql": {"name": "p", "predicate": "nope > 0"}}]"#, "f").unwrap();
    let error = check_table(&client, &table, &predicate, 0, &BTreeMap::new())
        .await
        .unwrap_err();
    assert!(error.to_string().contains("nope"), "{error}");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn profile_gives_each_column_its_figures_in_one_job() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let cluster = orders_cluster(&root).await;
    let client = cluster.client().await.unwrap();
    let table = table_info(&client, "orders").await.unwrap();
    let jobs_before = client.list_jobs().await.unwrap().len();
    let profile = profile_table(&client, "orders", &table.schema, &one_task_per_file())
        .await
        .unwrap();
    let jobs = client.list_jobs().await.unwrap();
    assert_eq!(jobs.len(), jobs_before + 1, "exactly one job");
    let job = jobs
        .iter()
        .find(|j| j.job_id.to_string() == profile.job_id)
        .unwrap();
    assert!(
        job.stages.len() >= 2
            && job
                .stages
                .iter()
                .any(|s| s.tasks_total >= 2 && s.output_rows == u64::from(s.tasks_total)),
        "partial aggregates in parallel tasks, then the final one: {:?}",
        job.stages
    );
    assert_eq!(profile.rows, 6);

    let figures: Vec<_> = profile
        .columns
        .iter()
        .map(|c| {
            (
                c.name.as_str(),
                c.nulls,
                c.null_fraction,
                c.approx_distinct,
                c.min.as_deref(),
                c.max.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        figures,
        vec![
            ("id", 0, Some(0.0), Some(5), Some("1"), Some("5")),
            (
                "region",
                1,
                Some(1.0 / 6.0),
                Some(3),
                Some("apac"),
                Some("us")
            ),
            (
                "revenue",
                1,
                Some(1.0 / 6.0),
                Some(5),
                Some("-5.0"),
                Some("40.0")
            ),
            (
                "ts",
                0,
                Some(0.0),
                Some(6),
                Some("2026-11-01T10:00:00"),
                Some("2026-11-02T12:00:00")
            ),
        ]
    );
    let quartiles: Vec<_> = profile.columns.iter().map(|c| c.quartiles).collect();
    assert!(
        quartiles[1].is_none() && quartiles[3].is_none(),
        "text and time have none"
    );

    // The quartiles are DataFusion's t-digest estimates, as one process computes them on
    // the same files.
    let ctx = SessionContext::new();
    ctx.register_parquet(
        "orders",
        root.join("orders").to_str().unwrap(),
        ParquetReadOptions::default(),
    )
    .await
    .unwrap();
    for (index, column) in [(0, "id"), (2, "revenue")] {
        let items: Vec<String> = QUANTILES
            .iter()
            .map(|q| {
                format!(
                    "approx_percentile_cont({q}) WITHIN GROUP (ORDER BY CAST({column} AS DOUBLE))"
                )
            })
            .collect();
        let batches = ctx
            .sql(&format!("SELECT {} FROM orders", items.join(", ")))
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let expected: Vec<Option<f64>> = (0..3)
            .map(|i| {
                let value =
                    datafusion::scalar::ScalarValue::try_from_array(batches[0].column(i), 0)
                        .unwrap();
                match value {
                    datafusion::scalar::ScalarValue::Float64(v) => v,
                    other => panic!("{other:?}"),
                }
            })
            .collect();
        assert_eq!(
            quartiles[index].unwrap().to_vec(),
            expected,
            "{column} quartiles"
        );
    }
    // Ids 1, 2, 3, 4, 5, 5 and revenues -5, 10, 20, 30, 40 (one NULL), interpolated.
    assert_eq!(quartiles[0].unwrap(), [Some(2.0), Some(3.5), Some(5.0)]);
    assert_eq!(quartiles[2].unwrap(), [Some(6.875), Some(20.0), Some(32.5)]);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_empty_table_fails_row_count_and_freshness_and_has_no_null_fraction() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let cluster = cluster_with_data_roots(2, &[&root]).await;
    let client = cluster.client().await.unwrap();
    client
        .sql(&format!(
            "CREATE TABLE empty (id BIGINT, ts TIMESTAMP) STORED AS PARQUET LOCATION '{}'",
            root.join("empty").display()
        ))
        .await
        .unwrap();
    let table = table_info(&client, "empty").await.unwrap();
    let checks = parse_expectations(
        r#"[{"not_null": ["id"]}, {"unique": ["id"]}, {"range": {"column": "id", "min": 0}},
            {"row_count": {"min": 1}}, {"freshness": {"column": "ts", "max_age_seconds": 60}}]"#,
        "f",
    )
    .unwrap();
    let report = check_table(&client, &table, &checks, LATEST_TS, &BTreeMap::new())
        .await
        .unwrap();
    let verdicts: Vec<_> = report.checks.iter().map(verdict).collect();
    assert_eq!(
        verdicts,
        vec![
            (
                "not_null(id)",
                "not_null",
                "0 NULL rows",
                "0 NULL rows",
                true
            ),
            (
                "unique(id)",
                "unique",
                "0 duplicate rows",
                "0 duplicate rows",
                true
            ),
            (
                "range(id)",
                "range",
                "0 rows outside (min NULL, max NULL)",
                ">= 0",
                true
            ),
            ("row_count", "row_count", "0 rows", ">= 1", false),
            (
                "freshness(ts)",
                "freshness",
                "no values",
                "at most 60 s old",
                false
            ),
        ]
    );
    let profile = profile_table(&client, "empty", &table.schema, &BTreeMap::new())
        .await
        .unwrap();
    assert_eq!(profile.rows, 0);
    assert_eq!(profile.columns[0].null_fraction, None);
    assert_eq!(profile.columns[0].min, None);
    assert_eq!(profile.columns[0].quartiles, Some([None, None, None]));
    cluster.shutdown().await;
}

fn tally(dir: &Path, args: &[&str]) -> Output {
    Command::new(tally_binary())
        .args(args)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tally_check_prints_the_table_and_exits_0_1_or_2() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    write_orders(&root.join("orders")).await;
    let table = format!("orders={}", root.join("orders").display());
    std::fs::write(
        root.join("pass.json"),
        r#"[{"not_null": ["id"]}, {"row_count": {"min": 6, "max": 6}}]"#,
    )
    .unwrap();
    std::fs::write(
        root.join("fail.json"),
        r#"[{"not_null": ["id"]}, {"unique": ["id"]}]"#,
    )
    .unwrap();
    std::fs::write(root.join("malformed.json"), r#"[{"not_null": "id"}]"#).unwrap();
    std::fs::write(root.join("unknown.json"), r#"[{"not_null": ["nope"]}]"#).unwrap();
    let check = |file: &str, extra: &[&str]| {
        let mut args = vec!["check", "orders", "--workers", "2", "--table", &table];
        if !file.is_empty() {
            args.extend(["--expectations", file]);
        }
        args.extend(extra);
        tally(&root, &args)
    };

    let passed = check("pass.json", &[]);
    assert_eq!(passed.status.code(), Some(0), "{}", stderr(&passed));
    assert_eq!(
        stdout(&passed),
        "\
+--------------+-----------+-------------+-----------------+--------+
| check        | kind      | observed    | expected        | result |
+--------------+-----------+-------------+-----------------+--------+
| not_null(id) | not_null  | 0 NULL rows | 0 NULL rows     | PASS   |
| row_count    | row_count | 6 rows      | between 6 and 6 | PASS   |
+--------------+-----------+-------------+-----------------+--------+
"
    );

    let failed = check("fail.json", &[]);
    assert_eq!(failed.status.code(), Some(1), "{}", stderr(&failed));
    assert!(
        stdout(&failed)
            .contains("| unique(id)   | unique   | 1 duplicate row | 0 duplicate rows | FAIL   |"),
        "{}",
        stdout(&failed)
    );
    assert!(
        stderr(&failed).ends_with("error: 1 of 2 checks failed: unique(id)\n"),
        "{}",
        stderr(&failed)
    );

    let json = check("fail.json", &["--format", "json"]);
    assert_eq!(json.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_str(&stdout(&json)).unwrap();
    assert_eq!(report["passed"], false);
    assert_eq!(report["rows"], 6);
    assert_eq!(report["checks"][1]["name"], "unique(id)");
    assert_eq!(report["checks"][1]["observed"], "1 duplicate row");
    assert_eq!(report["checks"][1]["passed"], false);

    let malformed = check("malformed.json", &[]);
    assert_eq!(malformed.status.code(), Some(2));
    assert_eq!(
        stderr(&malformed),
        "error: expectations malformed.json: entry 1: not_null: expected a list of column names\n"
    );
    let unknown = check("unknown.json", &[]);
    assert_eq!(unknown.status.code(), Some(2));
    assert_eq!(
        stderr(&unknown),
        "error: check not_null(nope): table orders has no column \"nope\" (its columns: id, \
         region, revenue, ts)\n"
    );
    let bad_setting = check("pass.json", &["--set", "tally.nope=1"]);
    assert_eq!(bad_setting.status.code(), Some(2));
    assert!(
        stderr(&bad_setting).contains("tally.nope"),
        "{}",
        stderr(&bad_setting)
    );
    let nothing_attached = check("", &[]);
    assert_eq!(nothing_attached.status.code(), Some(2));
    assert!(
        stderr(&nothing_attached).contains("has no expectations attached"),
        "{}",
        stderr(&nothing_attached)
    );

    // Attached, the file is checked first, kept in the folder, and used from then on; the
    // table's data is unchanged by it.
    let attached = check("", &["--attach", "fail.json"]);
    assert_eq!(attached.status.code(), Some(1), "{}", stderr(&attached));
    assert_eq!(
        std::fs::read_to_string(root.join("orders").join(ATTACHED_FILE)).unwrap(),
        std::fs::read_to_string(root.join("fail.json")).unwrap()
    );
    let again = check("", &[]);
    assert_eq!(again.status.code(), Some(1), "{}", stderr(&again));
    assert_eq!(stdout(&again), stdout(&failed));
    let rows = tally(
        &root,
        &[
            "sql",
            "--workers",
            "1",
            "--table",
            &table,
            "--format",
            "csv",
            "-e",
            "SELECT count(*) AS n FROM orders",
        ],
    );
    assert_eq!(stdout(&rows), "n\n6\n", "{}", stderr(&rows));
    let bad_attach = check("", &["--attach", "malformed.json"]);
    assert_eq!(bad_attach.status.code(), Some(2));
    assert_eq!(
        std::fs::read_to_string(root.join("orders").join(ATTACHED_FILE)).unwrap(),
        std::fs::read_to_string(root.join("fail.json")).unwrap(),
        "a malformed file is never attached"
    );

    let profile = tally(
        &root,
        &[
            "profile",
            "orders",
            "--workers",
            "2",
            "--table",
            &table,
            "--format",
            "json",
            "--set",
            "tally.split_bytes=1000",
        ],
    );
    assert_eq!(profile.status.code(), Some(0), "{}", stderr(&profile));
    let profile: serde_json::Value = serde_json::from_str(&stdout(&profile)).unwrap();
    assert_eq!(profile["rows"], 6);
    assert_eq!(profile["columns"][1]["name"], "region");
    assert_eq!(profile["columns"][1]["nulls"], 1);
    assert_eq!(profile["columns"][1]["min"], "apac");
    let text = tally(
        &root,
        &["profile", "orders", "--workers", "1", "--table", &table],
    );
    assert_eq!(text.status.code(), Some(0), "{}", stderr(&text));
    assert!(
        stdout(&text).contains(
            "| region  | Utf8View      | 1     | 0.1667        | 3               | apac                \
             | us                  |       |     |      |"
        ),
        "{}",
        stdout(&text)
    );
    let missing = tally(&root, &["profile", "nope", "--workers", "1"]);
    assert_eq!(missing.status.code(), Some(2), "{}", stderr(&missing));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tally_check_against_a_running_coordinator_attaches_to_its_table_folder() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let cluster = orders_cluster(&root).await;
    std::fs::write(
        root.join("checks.json"),
        r#"[{"accepted_values": {"column": "region", "values": ["eu", "us", "apac"]}}]"#,
    )
    .unwrap();
    let endpoint = cluster.endpoint().to_string();
    let remote = |extra: &[&str]| {
        let mut args = vec!["check", "orders", "--coordinator", endpoint.as_str()];
        args.extend(extra);
        tally(&root, &args)
    };
    let attached = remote(&["--attach", "checks.json", "--format", "json"]);
    assert_eq!(attached.status.code(), Some(0), "{}", stderr(&attached));
    assert!(root.join("orders").join(ATTACHED_FILE).exists());
    let again = remote(&[]);
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    assert!(
        stdout(&again)
            .contains("| accepted_values(region) | accepted_values | 0 rows with other values |"),
        "{}",
        stdout(&again)
    );
    // The cluster's table reads as before: the file is no data. An overwrite replaces the
    // data and keeps the file.
    let client = cluster.client().await.unwrap();
    let count = |result: tally_client::QueryResult| {
        result.batches[0]
            .column(0)
            .as_any()
            .downcast_ref::<arrow::array::Int64Array>()
            .unwrap()
            .value(0)
    };
    let rows = client.sql("SELECT count(*) FROM orders").await.unwrap();
    assert_eq!(count(rows), 6);
    client
        .sql(
            "INSERT OVERWRITE orders SELECT CAST(7 AS BIGINT), 'eu', CAST(1.0 AS DOUBLE), \
             CAST('2026-11-03T00:00:00' AS TIMESTAMP)",
        )
        .await
        .unwrap();
    let rows = client.sql("SELECT count(*) FROM orders").await.unwrap();
    assert_eq!(count(rows), 1);
    assert!(root.join("orders").join(ATTACHED_FILE).exists());
    let after = remote(&[]);
    assert_eq!(after.status.code(), Some(0), "{}", stderr(&after));
    cluster.shutdown().await;
}
