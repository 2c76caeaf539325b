//! Materialized views: refreshed batch by batch they equal recomputation from scratch, for
//! every aggregate they keep; a range is reprocessed; nothing new is a no-op; a failed
//! refresh leaves the view as it was.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Float64Array, Int64Array, RecordBatch, StringArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use tally_client::{Client, LocalCluster, LocalClusterOptions, QueryResult};
use tally_coordinator::CoordinatorConfig;
use tally_tests::compare::assert_same_results;

const DEFINITION: &str = "SELECT campaign, country, day, sum(spend) AS spend, count(*) AS n, \
     count(spend) AS paid, min(spend) AS lo, max(spend) AS hi, avg(spend) AS avg_spend, \
     count(DISTINCT user_id) AS users, sum(DISTINCT clicks) AS click_levels, \
     approx_distinct(user_id) AS approx_users \
     FROM impressions WHERE clicks < 9 GROUP BY campaign, country, day";

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("campaign", DataType::Utf8, false),
        Field::new("country", DataType::Utf8, true),
        Field::new("day", DataType::Utf8, false),
        Field::new("user_id", DataType::Int64, true),
        Field::new("spend", DataType::Float64, true),
        Field::new("clicks", DataType::Int64, false),
    ]))
}

/// `rows` impressions of batch `seed` on `day` (or on a day of 1..=3 picked per row): NULL
/// countries, users and spend now and then, users repeated across batches, and from the
/// fourth batch on campaigns no earlier batch had.
fn impressions(seed: u64, rows: usize, day: Option<u32>) -> RecordBatch {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = move |n: u64| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) % n
    };
    let campaigns = 3 + seed.min(6);
    let (mut campaign, mut country, mut days) = (vec![], vec![], vec![]);
    let (mut user, mut spend, mut clicks) = (vec![], vec![], vec![]);
    for _ in 0..rows {
        campaign.push(format!("c{}", next(campaigns)));
        country.push(["de", "fr", "us"].get(next(4) as usize).copied());
        let d = day.unwrap_or(1 + next(3) as u32);
        days.push(format!("2026-11-{d:02}"));
        user.push((next(10) > 0).then(|| next(500) as i64));
        spend.push((next(8) > 0).then(|| next(10_000) as f64 / 100.0));
        clicks.push(next(10) as i64);
    }
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(StringArray::from(campaign)),
            Arc::new(StringArray::from(country)),
            Arc::new(StringArray::from(days)),
            Arc::new(Int64Array::from(user)),
            Arc::new(Float64Array::from(spend)),
            Arc::new(Int64Array::from(clicks)),
        ],
    )
    .unwrap()
}

fn write(path: &Path, batch: &RecordBatch) {
    let file = std::fs::File::create(path).unwrap();
    let mut writer = ArrowWriter::try_new(file, schema(), None).unwrap();
    writer.write(batch).unwrap();
    writer.close().unwrap();
}

struct Setup {
    cluster: LocalCluster,
    client: Client,
    source: PathBuf,
    _dirs: tempfile::TempDir,
}

/// A 3-worker cluster with an `impressions` table of `first` in its own folder.
async fn setup(first: &[(String, RecordBatch)]) -> Setup {
    let dirs = tempfile::tempdir().unwrap();
    let source = dirs.path().join("impressions");
    std::fs::create_dir_all(&source).unwrap();
    for (name, batch) in first {
        write(&source.join(name), batch);
    }
    let tables = dirs.path().join("tables");
    let cluster = LocalCluster::start_with(LocalClusterOptions {
        workers: 3,
        coordinator: CoordinatorConfig {
            data_roots: vec![dirs.path().to_path_buf()],
            table_dir: tables,
            ..Default::default()
        },
        ..Default::default()
    })
    .await
    .unwrap();
    cluster
        .register_table("impressions", source.to_str().unwrap())
        .await
        .unwrap();
    let client = cluster.client().await.unwrap();
    Setup {
        cluster,
        client,
        source,
        _dirs: dirs,
    }
}

/// As `setup`, with the view `daily` of `DEFINITION` created.
async fn setup_with_daily(first: &[(String, RecordBatch)]) -> Setup {
    let setup = setup(first).await;
    sql(
        &setup.client,
        &format!("CREATE MATERIALIZED VIEW daily AS {DEFINITION}"),
    )
    .await;
    setup
}

/// One source file per day for days 1 to 3.
fn three_days() -> Vec<(String, RecordBatch)> {
    (1..=3)
        .map(|d| {
            (
                format!("day-{d}.parquet"),
                impressions(d as u64, 300, Some(d)),
            )
        })
        .collect()
}

/// A cluster whose source holds one file per day for days 1 to 3, and the view `daily`
/// created `WITH (options)`.
async fn three_days_with_daily(options: &str) -> Setup {
    let setup = setup(&three_days()).await;
    sql(
        &setup.client,
        &format!("CREATE MATERIALIZED VIEW daily WITH ({options}) AS {DEFINITION}"),
    )
    .await;
    setup
}

async fn sql(client: &Client, sql: &str) -> QueryResult {
    client
        .sql(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// The view's query run from scratch by single-process DataFusion over the source files.
async fn recomputed(source: &Path, query: &str) -> Vec<RecordBatch> {
    let ctx = SessionContext::new();
    ctx.register_parquet(
        "impressions",
        source.to_str().unwrap(),
        ParquetReadOptions::default(),
    )
    .await
    .unwrap();
    ctx.sql(query).await.unwrap().collect().await.unwrap()
}

/// `daily` answers what recomputing its definition from scratch answers.
async fn assert_view_is_current(client: &Client, source: &Path, what: &str) {
    let view = sql(client, "SELECT * FROM daily").await;
    assert_same_results(
        what,
        &recomputed(source, DEFINITION).await,
        &view.batches,
        false,
    );
}

/// (refresh kind, inputs read, inputs covered, groups) from a create or refresh answer.
fn refreshed(result: &QueryResult) -> (String, u64, u64, u64) {
    let batch = &result.batches[0];
    let text = |i: usize| {
        batch
            .column(i)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap()
            .value(0)
            .to_string()
    };
    let number = |i: usize| {
        batch
            .column(i)
            .as_any()
            .downcast_ref::<UInt64Array>()
            .unwrap()
            .value(0)
    };
    (text(1), number(2), number(3), number(4))
}

/// The bucket files a refresh wrote anew (the others were carried as they were).
fn buckets_rewritten(result: &QueryResult) -> u64 {
    let batch = &result.batches[0];
    let column = batch.column(batch.schema().index_of("buckets_rewritten").unwrap());
    column
        .as_any()
        .downcast_ref::<UInt64Array>()
        .unwrap()
        .value(0)
}

fn rows(batches: &[RecordBatch]) -> usize {
    batches.iter().map(|b| b.num_rows()).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_view_refreshed_batch_by_batch_equals_recomputation() {
    let setup = setup(&[("batch-00.parquet".to_string(), impressions(0, 400, None))]).await;
    let client = &setup.client;
    let created = sql(
        client,
        &format!("CREATE MATERIALIZED VIEW daily AS {DEFINITION}"),
    )
    .await;
    let (kind, read, covered, groups) = refreshed(&created);
    assert_eq!((kind.as_str(), read, covered), ("full", 1, 1));
    let expected = recomputed(&setup.source, DEFINITION).await;
    assert_eq!(groups as usize, rows(&expected));
    let view = sql(client, "SELECT * FROM daily").await;
    assert_same_results("view after create", &expected, &view.batches, false);

    for batch in 1..=10u64 {
        // Batch 5 is empty: a file with no rows is an input like any other.
        let rows_in_batch = if batch == 5 { 0 } else { 150 };
        let name = format!("batch-{batch:02}.parquet");
        write(
            &setup.source.join(&name),
            &impressions(batch, rows_in_batch, None),
        );
        let refresh = sql(client, "REFRESH MATERIALIZED VIEW daily").await;
        let (kind, read, covered, _) = refreshed(&refresh);
        assert_eq!(
            (kind.as_str(), read, covered),
            ("incremental", 1, batch + 1),
            "batch {batch}"
        );
        assert_view_is_current(client, &setup.source, &format!("view after batch {batch}")).await;
    }

    // Nothing new: nothing runs, nothing changes.
    let again = sql(client, "REFRESH MATERIALIZED VIEW daily").await;
    assert_eq!(refreshed(&again).0, "none (nothing new)");
    assert_eq!(refreshed(&again).1, 0);

    // A report over the view rolls states up to a coarser grain, distinct users exactly.
    let report = "SELECT day, sum(spend) AS spend, sum(n) AS n FROM daily GROUP BY day";
    let from_source = "SELECT day, sum(spend) AS spend, count(*) AS n FROM impressions \
                       WHERE clicks < 9 GROUP BY day";
    assert_same_results(
        report,
        &recomputed(&setup.source, from_source).await,
        &sql(client, report).await.batches,
        false,
    );

    let tables = client.list_tables().await.unwrap();
    let daily = tables.iter().find(|t| t.name == "daily").unwrap();
    let coverage = daily.view.as_deref().unwrap();
    assert!(
        coverage.contains("of impressions: 11 inputs") && coverage.ends_with("up to date"),
        "{coverage}"
    );
    setup.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rewritten_day_is_reprocessed_by_range_and_a_full_refresh_recomputes() {
    let setup = three_days_with_daily("bucket_by = 'campaign', buckets = 4").await;
    let client = &setup.client;

    // Each of the 4 buckets is written by its own task, with the groups that hash to it.
    let states = setup
        .source
        .parent()
        .unwrap()
        .join("tables/daily/gen-000001");
    let groups_per_bucket: Vec<i64> = (0..4)
        .map(|b| {
            let file = std::fs::File::open(states.join(format!("bucket-{b:05}.parquet"))).unwrap();
            let reader =
                datafusion::parquet::file::reader::SerializedFileReader::new(file).unwrap();
            datafusion::parquet::file::reader::FileReader::metadata(&reader)
                .file_metadata()
                .num_rows()
        })
        .collect();
    let filled = groups_per_bucket.iter().filter(|&&n| n > 0).count();
    assert!(filled >= 2, "groups per bucket: {groups_per_bucket:?}");

    // Day 2's file is replaced by a corrected one.
    write(
        &setup.source.join("day-2.parquet"),
        &impressions(20, 250, Some(2)),
    );
    let err = client
        .sql("REFRESH MATERIALIZED VIEW daily")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("changed or vanished") && err.contains("FULL"),
        "{err}"
    );
    let err = client
        .sql("REFRESH MATERIALIZED VIEW daily WHERE clicks = 1")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("only the view's dimensions"), "{err}");

    let range = sql(
        client,
        "REFRESH MATERIALIZED VIEW daily WHERE day = '2026-11-02'",
    )
    .await;
    let (kind, _, covered, _) = refreshed(&range);
    assert!(kind.starts_with("range"), "{kind}");
    assert_eq!(covered, 3);
    assert_view_is_current(client, &setup.source, "view after reprocessing day 2").await;
    // The view is current again: an incremental refresh has nothing to do.
    let again = sql(client, "REFRESH MATERIALIZED VIEW daily").await;
    assert_eq!(refreshed(&again).0, "none (nothing new)");

    // A file gone: incremental refuses, FULL recomputes from what is there.
    std::fs::remove_file(setup.source.join("day-3.parquet")).unwrap();
    assert!(client.sql("REFRESH MATERIALIZED VIEW daily").await.is_err());
    let full = sql(client, "REFRESH MATERIALIZED VIEW daily FULL").await;
    assert_eq!(refreshed(&full).0, "full");
    assert_eq!(refreshed(&full).2, 2);
    assert_view_is_current(client, &setup.source, "view after FULL").await;
    setup.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_refresh_leaves_the_view_as_it_was() {
    let setup =
        setup_with_daily(&[("batch-00.parquet".to_string(), impressions(0, 300, None))]).await;
    let client = &setup.client;
    let before = sql(client, "SELECT * FROM daily").await;

    // A new input that is not Parquet at all: the refresh fails on the workers.
    std::fs::write(setup.source.join("batch-01.parquet"), b"not parquet").unwrap();
    assert!(client.sql("REFRESH MATERIALIZED VIEW daily").await.is_err());
    let after = sql(client, "SELECT * FROM daily").await;
    assert_same_results(
        "view after a failed refresh",
        &before.batches,
        &after.batches,
        false,
    );
    let tables = client.list_tables().await.unwrap();
    let coverage = tables
        .iter()
        .find(|t| t.name == "daily")
        .and_then(|t| t.view.clone())
        .unwrap();
    assert!(coverage.contains(": 1 inputs"), "{coverage}");

    // Fixed, the next refresh takes it.
    write(
        &setup.source.join("batch-01.parquet"),
        &impressions(1, 100, None),
    );
    let refresh = sql(client, "REFRESH MATERIALIZED VIEW daily").await;
    assert_eq!(refreshed(&refresh).1, 1);
    assert_view_is_current(client, &setup.source, "view after the fixed refresh").await;
    setup.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn views_refuse_what_they_cannot_keep_by_name() {
    let setup = setup(&[("batch-00.parquet".to_string(), impressions(0, 50, None))]).await;
    let client = &setup.client;
    for (definition, expected) in [
        (
            "SELECT campaign, median(spend) AS m FROM impressions GROUP BY campaign",
            "cannot keep median",
        ),
        (
            "SELECT campaign, sum(spend) AS s FROM impressions GROUP BY campaign HAVING sum(spend) > 1",
            "no HAVING",
        ),
        (
            "SELECT sum(spend) AS s FROM impressions",
            "without GROUP BY",
        ),
        (
            "SELECT campaign, sum(spend) / count(*) AS s FROM impressions GROUP BY campaign",
            "expression over aggregates",
        ),
    ] {
        let err = client
            .sql(&format!("CREATE MATERIALIZED VIEW v AS {definition}"))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains(expected), "{definition}: {err}");
    }
    let err = client
        .sql("REFRESH MATERIALIZED VIEW impressions")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a materialized view"), "{err}");
    let err = client
        .sql("REFRESH MATERIALIZED VIEW nothing")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("no materialized view named nothing"), "{err}");

    sql(
        client,
        &format!("CREATE MATERIALIZED VIEW daily AS {DEFINITION}"),
    )
    .await;
    let err = client
        .sql(&format!("CREATE MATERIALIZED VIEW daily AS {DEFINITION}"))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("already exists"), "{err}");
    sql(client, "DROP MATERIALIZED VIEW daily").await;
    assert!(client.sql("SELECT * FROM daily").await.is_err());
    sql(client, "DROP MATERIALIZED VIEW IF EXISTS daily").await;
    setup.cluster.shutdown().await;
}

/// EXPLAIN's text for `query` with `settings`.
async fn explained(client: &Client, query: &str, settings: &[(&str, &str)]) -> String {
    let settings = settings
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let explain = client
        .sql_with_settings(&format!("EXPLAIN {query}"), &settings)
        .await
        .unwrap_or_else(|e| panic!("EXPLAIN {query}: {e}"));
    arrow::util::pretty::pretty_format_batches(&explain.batches)
        .unwrap()
        .to_string()
}

const FROM_VIEW: &str = "answered from materialized view daily";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reports_over_the_source_are_answered_from_an_up_to_date_view() {
    let setup =
        setup_with_daily(&[("batch-00.parquet".to_string(), impressions(0, 400, None))]).await;
    let client = &setup.client;

    // A coarser grain, a filter on a dimension, exact distinct users merged across groups.
    let report = "SELECT i.day, count(DISTINCT user_id) AS users, sum(spend) AS spend, \
                  avg(spend) AS avg_spend, max(spend) AS hi FROM impressions i \
                  WHERE clicks < 9 AND day >= '2026-11-02' GROUP BY i.day ORDER BY i.day";
    let plan = explained(client, report, &[]).await;
    assert!(
        plan.contains(FROM_VIEW) && plan.contains("gen-000001"),
        "{plan}"
    );
    let via_view = sql(client, report).await;
    assert_same_results(
        report,
        &recomputed(&setup.source, report).await,
        &via_view.batches,
        true,
    );
    let grand = "SELECT count(*) AS n, count(DISTINCT user_id) AS users FROM impressions \
                 WHERE clicks < 9";
    assert!(explained(client, grand, &[]).await.contains(FROM_VIEW));
    assert_same_results(
        grand,
        &recomputed(&setup.source, grand).await,
        &sql(client, grand).await.batches,
        false,
    );

    // avg derived from a view that keeps only sums and counts (integers summed exactly).
    sql(
        client,
        "CREATE MATERIALIZED VIEW totals AS SELECT country, sum(spend) AS spend, \
         count(spend) AS paid, sum(clicks) AS clicks, count(clicks) AS counted \
         FROM impressions GROUP BY country",
    )
    .await;
    let averages = "SELECT country, avg(spend) AS mean_spend, sum(spend) AS spend, \
                    avg(clicks) AS mean_clicks FROM impressions GROUP BY country";
    let plan = explained(client, averages, &[]).await;
    assert!(
        plan.contains("answered from materialized view totals"),
        "{plan}"
    );
    assert_same_results(
        averages,
        &recomputed(&setup.source, averages).await,
        &sql(client, averages).await.batches,
        false,
    );

    // Where the view cannot answer exactly, the query reads the source.
    for query in [
        // A filter on a column that is not a dimension.
        "SELECT day, sum(spend) AS spend FROM impressions WHERE clicks < 9 AND spend > 10 GROUP BY day",
        // Without the view's own filter.
        "SELECT day, sum(spend) AS spend FROM impressions GROUP BY day",
        // An aggregate the view does not keep.
        "SELECT day, median(spend) AS m FROM impressions WHERE clicks < 9 GROUP BY day",
        // A grand total of approx_distinct (DataFusion's grouped and single sketches differ).
        "SELECT approx_distinct(user_id) AS approx_users FROM impressions WHERE clicks < 9",
        // A grouping that is not a dimension.
        "SELECT clicks, sum(spend) AS spend FROM impressions WHERE clicks < 9 GROUP BY clicks",
    ] {
        let plan = explained(client, query, &[]).await;
        assert!(!plan.contains(FROM_VIEW), "{query}: {plan}");
        assert_same_results(
            query,
            &recomputed(&setup.source, query).await,
            &sql(client, query).await.batches,
            false,
        );
    }
    let off = explained(client, report, &[("tally.view_rewrite", "false")]).await;
    assert!(!off.contains(FROM_VIEW), "{off}");

    // A file the view does not cover yet is read alongside its states, exactly.
    write(
        &setup.source.join("batch-01.parquet"),
        &impressions(1, 100, None),
    );
    let plan = explained(client, report, &[]).await;
    assert!(
        plan.contains("daily plus 1 source file(s) it does not cover yet"),
        "{plan}"
    );
    assert_same_results(
        "view plus an uncovered file",
        &recomputed(&setup.source, report).await,
        &sql(client, report).await.batches,
        true,
    );
    sql(client, "REFRESH MATERIALIZED VIEW daily").await;
    let plan = explained(client, report, &[]).await;
    assert!(plan.contains(FROM_VIEW) && !plan.contains("plus"), "{plan}");
    // A covered file rewritten: the view no longer answers for the source.
    write(
        &setup.source.join("batch-01.parquet"),
        &impressions(11, 120, None),
    );
    assert!(!explained(client, report, &[]).await.contains(FROM_VIEW));
    assert_same_results(
        "a covered file changed: answered from the source",
        &recomputed(&setup.source, report).await,
        &sql(client, report).await.batches,
        true,
    );
    setup.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_view_and_its_coverage_outlive_the_coordinator_in_etcd() {
    use tally_meta::MetaConfig;
    use tally_tests::etcd::{Etcd, unique_cluster};

    let etcd = Etcd::start();
    let meta = MetaConfig {
        etcd: vec![etcd.endpoint.clone()],
        cluster: unique_cluster("views"),
    };
    let dirs = tempfile::tempdir().unwrap();
    let source = dirs.path().join("impressions");
    std::fs::create_dir_all(&source).unwrap();
    write(&source.join("batch-00.parquet"), &impressions(0, 300, None));
    let start = || async {
        LocalCluster::start_with(LocalClusterOptions {
            workers: 2,
            coordinator: CoordinatorConfig {
                meta: meta.clone(),
                data_roots: vec![dirs.path().to_path_buf()],
                table_dir: dirs.path().join("tables"),
                ..Default::default()
            },
            ..Default::default()
        })
        .await
        .unwrap()
    };

    let first = start().await;
    first
        .register_table("impressions", source.to_str().unwrap())
        .await
        .unwrap();
    let client = first.client().await.unwrap();
    sql(
        &client,
        &format!("CREATE MATERIALIZED VIEW daily AS {DEFINITION}"),
    )
    .await;
    first.shutdown().await;

    let second = start().await;
    let client = second.client().await.unwrap();
    assert_same_results(
        "view after a coordinator restart",
        &recomputed(&source, DEFINITION).await,
        &sql(&client, "SELECT * FROM daily").await.batches,
        false,
    );
    write(&source.join("batch-01.parquet"), &impressions(1, 100, None));
    let refresh = sql(&client, "REFRESH MATERIALIZED VIEW daily").await;
    assert_eq!(refreshed(&refresh).1, 1, "only the new file is read");
    assert_eq!(refreshed(&refresh).2, 2);
    assert_same_results(
        "view refreshed after the restart",
        &recomputed(&source, DEFINITION).await,
        &sql(&client, "SELECT * FROM daily").await.batches,
        false,
    );
    second.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_process_killed_mid_refresh_leaves_the_view_whole() {
    use std::collections::BTreeMap;
    use std::time::Duration;
    use tally_client::{JobState, TaskState};
    use tally_tests::harness::alive_workers;
    use tally_tests::process::{Process, free_port, start_workers};

    let dirs = tempfile::tempdir().unwrap();
    let source = dirs.path().join("impressions");
    std::fs::create_dir_all(&source).unwrap();
    write(
        &source.join("batch-00.parquet"),
        &impressions(0, 2_000, None),
    );
    let coordinator = format!("127.0.0.1:{}", free_port());
    let table = format!("impressions={}", source.display());
    let tables = dirs.path().join("tables");
    let (coordinator_process, _) = Process::start(
        "coordinator",
        &[
            "coordinator",
            "--bind",
            &coordinator,
            "--worker-timeout-secs",
            "3",
            "--data-root",
            dirs.path().to_str().unwrap(),
            "--table-dir",
            tables.to_str().unwrap(),
            "--table",
            &table,
        ],
    );
    let spool = tempfile::tempdir().unwrap();
    let mut workers = start_workers(3, &["--coordinator", &coordinator], spool.path());
    let client = Client::connect(&coordinator).await.unwrap();
    for _ in 0..200 {
        if alive_workers(&client).await == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(alive_workers(&client).await, 3);
    sql(
        &client,
        &format!("CREATE MATERIALIZED VIEW daily AS {DEFINITION}"),
    )
    .await;
    let before = sql(&client, "SELECT * FROM daily").await;

    // A big batch read in tiny record batches: the refresh runs long enough to lose a worker.
    write(
        &source.join("batch-01.parquet"),
        &impressions(1, 60_000, None),
    );
    let slow = BTreeMap::from([(
        "datafusion.execution.batch_size".to_string(),
        "16".to_string(),
    )]);
    let job = client
        .submit("REFRESH MATERIALIZED VIEW daily", &slow)
        .await
        .unwrap();
    let victim = loop {
        let status = client.job(&job).await.unwrap();
        assert_eq!(
            status.state,
            JobState::Running,
            "the refresh ended before the kill"
        );
        let running = status
            .stages
            .iter()
            .flat_map(|s| &s.tasks)
            .find(|t| t.state == TaskState::Running)
            .and_then(|t| t.worker_id.clone());
        if let Some(worker) = running {
            break worker;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let index = workers
        .iter()
        .position(|(id, _)| id == victim.as_str())
        .unwrap();
    workers.remove(index).1.kill();

    // Either the refresh finishes on the other workers and the view holds both batches, or
    // it fails and the view is exactly as before: never a mix.
    let outcome = client.wait(&job).await;
    let after = sql(&client, "SELECT * FROM daily").await;
    match outcome {
        Ok(status) => {
            let reruns = status
                .stages
                .iter()
                .flat_map(|s| &s.tasks)
                .filter(|t| t.attempt > 0)
                .count();
            assert!(reruns > 0, "no task ran again after the kill");
            assert_same_results(
                "view after a refresh that lost a worker",
                &recomputed(&source, DEFINITION).await,
                &after.batches,
                false,
            );
        }
        Err(error) => {
            eprintln!("the refresh failed: {error}");
            assert_same_results(
                "view after a failed refresh",
                &before.batches,
                &after.batches,
                false,
            );
        }
    }
    for (_, worker) in workers {
        worker.stop();
    }
    coordinator_process.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_refresh_of_a_view_runs_at_a_time() {
    use std::collections::BTreeMap;

    let setup =
        setup_with_daily(&[("batch-00.parquet".to_string(), impressions(0, 200, None))]).await;
    let client = &setup.client;
    write(
        &setup.source.join("batch-01.parquet"),
        &impressions(1, 40_000, None),
    );
    // Tiny record batches: the first refresh is still running when the second arrives.
    let slow = BTreeMap::from([(
        "datafusion.execution.batch_size".to_string(),
        "16".to_string(),
    )]);
    let first = client
        .submit("REFRESH MATERIALIZED VIEW daily", &slow)
        .await
        .unwrap();
    for statement in [
        "REFRESH MATERIALIZED VIEW daily FULL",
        "DROP MATERIALIZED VIEW daily",
    ] {
        let err = client.sql(statement).await.unwrap_err().to_string();
        assert!(
            err.contains(&format!("being refreshed by job {first}")),
            "{statement}: {err}"
        );
    }
    let status = client.wait(&first).await.unwrap();
    assert_eq!(status.state, tally_client::JobState::Succeeded);
    assert_view_is_current(client, &setup.source, "view after the refresh that ran").await;
    // The lock is gone with the job.
    let again = sql(client, "REFRESH MATERIALIZED VIEW daily").await;
    assert_eq!(refreshed(&again).0, "none (nothing new)");
    setup.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn plans_with_and_without_the_view_rewrite() {
    use tally_tests::harness::explained_stages;

    let setup =
        setup_with_daily(&[("batch-00.parquet".to_string(), impressions(0, 400, None))]).await;
    let client = &setup.client;
    let stages = |query: &'static str| async move {
        explained_stages(&sql(client, &format!("EXPLAIN {query}")).await)
    };
    // Answered from the states: the scan reads the view's generation, not the source.
    insta::assert_snapshot!(
        "report_from_the_view",
        stages(
            "SELECT day, count(DISTINCT user_id) AS users, avg(spend) AS avg_spend \
             FROM impressions WHERE clicks < 9 AND country = 'de' GROUP BY day"
        )
        .await
    );
    // A filter on a column the view does not keep: the source is read.
    insta::assert_snapshot!(
        "report_from_the_source",
        stages(
            "SELECT day, count(DISTINCT user_id) AS users FROM impressions \
             WHERE clicks < 9 AND spend > 10 GROUP BY day"
        )
        .await
    );
    setup.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_of_one_day_rewrites_only_that_days_bucket() {
    use std::os::unix::fs::MetadataExt;

    let setup = three_days_with_daily("bucket_by = 'day', buckets = 6").await;
    let client = &setup.client;
    let tables = setup.source.parent().unwrap().join("tables/daily");
    let inode = |generation: u32, bucket: usize| {
        let file = tables.join(format!("gen-{generation:06}/bucket-{bucket:05}.parquet"));
        std::fs::metadata(file).unwrap().ino()
    };

    // Another batch of day 2: one bucket is merged, the others are carried as they were.
    write(
        &setup.source.join("day-2-b.parquet"),
        &impressions(7, 200, Some(2)),
    );
    let refresh = sql(client, "REFRESH MATERIALIZED VIEW daily").await;
    assert_eq!(buckets_rewritten(&refresh), 1);
    let carried = (0..6).filter(|&b| inode(1, b) == inode(2, b)).count();
    assert_eq!(carried, 5, "the untouched buckets are the previous files");
    assert_view_is_current(client, &setup.source, "view after a one-day batch").await;

    // A batch spanning days touches every bucket those days hash to.
    write(
        &setup.source.join("mixed.parquet"),
        &impressions(8, 200, None),
    );
    let refresh = sql(client, "REFRESH MATERIALIZED VIEW daily").await;
    assert_eq!(
        buckets_rewritten(&refresh),
        6,
        "no statistics narrow a mixed file"
    );
    assert_view_is_current(client, &setup.source, "view after a mixed batch").await;
    setup.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_view_kept_in_s3_refreshes_like_one_on_disk_and_drops_its_objects() {
    use tally_tests::moto::Moto;

    let labels = tempfile::tempdir().unwrap();
    std::fs::write(labels.path().join("l.csv"), "campaign,label\nc0,zero\n").unwrap();
    let moto = Moto::start(&["views"], &[("s3://views/labels", labels.path())]);
    let options = moto.table_options(&moto.secret_access_key);
    let setup = setup(&three_days()).await;
    let client = &setup.client;
    // The view's bucket is written with the options its tables were registered with.
    sql(
        client,
        &format!(
            "CREATE EXTERNAL TABLE labels STORED AS CSV LOCATION 's3://views/labels/' {options}"
        ),
    )
    .await;
    sql(
        client,
        &format!(
            "CREATE MATERIALIZED VIEW daily WITH (bucket_by = 'day', buckets = 6, \
             location = 's3://views/daily/') AS {DEFINITION}"
        ),
    )
    .await;
    assert_view_is_current(client, &setup.source, "view kept in S3").await;
    let tables = client.list_tables().await.unwrap();
    let daily = tables.iter().find(|t| t.name == "daily").unwrap();
    assert_eq!(daily.path, "s3://views/daily");

    write(
        &setup.source.join("day-2-b.parquet"),
        &impressions(7, 200, Some(2)),
    );
    let refresh = sql(client, "REFRESH MATERIALIZED VIEW daily").await;
    assert_eq!(buckets_rewritten(&refresh), 1, "the others are copied");
    assert_view_is_current(client, &setup.source, "view in S3 after a one-day batch").await;
    write(
        &setup.source.join("mixed.parquet"),
        &impressions(8, 200, None),
    );
    sql(client, "REFRESH MATERIALIZED VIEW daily").await;
    assert_view_is_current(client, &setup.source, "view in S3 after a mixed batch").await;

    // What a prefix holds, seen by registering it as a table.
    let holds_objects = |prefix: &'static str| {
        let options = options.clone();
        async move {
            let registered = client
                .sql(&format!(
                    "CREATE EXTERNAL TABLE probe STORED AS PARQUET LOCATION \
                     's3://views/daily/{prefix}' {options}"
                ))
                .await;
            let _ = client.sql("DROP TABLE IF EXISTS probe").await;
            match registered {
                Ok(_) => true,
                Err(e) if e.to_string().contains("no objects under") => false,
                Err(e) => panic!("probe s3://views/daily/{prefix}: {e}"),
            }
        }
    };
    assert!(
        !holds_objects("gen-000001/").await,
        "generations before the previous one are removed"
    );
    assert!(holds_objects("gen-000003/").await);
    sql(client, "DROP MATERIALIZED VIEW daily").await;
    assert!(!holds_objects("").await, "a dropped view leaves nothing");
    setup.cluster.shutdown().await;
}
