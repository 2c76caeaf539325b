//! Kafka topics as tables, against a real Kafka-protocol broker (tansu): a query reads the
//! offsets fixed when it was planned, cut into tasks of `tally.kafka_max_records_per_task`
//! records; a materialized view over a topic takes every record exactly once, refresh after
//! refresh, even when a worker dies in the middle of one; malformed records fail with their offset
//! or are skipped; a missing topic or broker is one clear line.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use tally_client::{
    Client, JobMetrics, JobState, LocalCluster, LocalClusterOptions, QueryResult, TaskState,
};
use tally_coordinator::CoordinatorConfig;
use tally_tests::harness::run_with;
use tally_tests::kafka::Tansu;

const COUNTRIES: [&str; 5] = ["de", "fr", "us", "jp", "br"];

/// What has been produced to a topic, to check answers against.
#[derive(Default)]
struct Produced {
    /// Country -> (records, sum of ads, sum of spend, distinct ads).
    by_country: BTreeMap<String, (u64, i64, i64, BTreeSet<i64>)>,
    records: u64,
    next_id: i64,
}

impl Produced {
    /// `rows` clicks spread over `partitions` partitions, produced one batch per partition.
    async fn batch(&mut self, tansu: &Tansu, topic: &str, partitions: i32, rows: usize) {
        let mut per_partition: Vec<Vec<(String, String)>> = vec![Vec::new(); partitions as usize];
        for _ in 0..rows {
            let id = self.next_id;
            self.next_id += 1;
            let country = COUNTRIES[(id * 7 % 5) as usize];
            let ad = id % 13;
            let spend = id * 3 % 101;
            let value = format!(r#"{{"ad": {ad}, "country": "{country}", "spend": {spend}}}"#);
            per_partition[(id % partitions as i64) as usize].push((format!("user-{id}"), value));
            let entry = self.by_country.entry(country.to_string()).or_default();
            entry.0 += 1;
            entry.1 += ad;
            entry.2 += spend;
            entry.3.insert(ad);
            self.records += 1;
        }
        for (partition, records) in per_partition.iter().enumerate() {
            let records: Vec<(Option<&str>, &str)> = records
                .iter()
                .map(|(k, v)| (Some(k.as_str()), v.as_str()))
                .collect();
            if !records.is_empty() {
                tansu.produce(topic, partition as i32, &records).await;
            }
        }
    }

    /// `REPORT`'s answer over everything produced.
    fn report(&self) -> Vec<String> {
        self.by_country
            .iter()
            .map(|(country, (n, ads, spend, distinct))| {
                format!("{country}|{n}|{ads}|{spend}|{}", distinct.len())
            })
            .collect()
    }
}

const REPORT: &str = "SELECT country, count(*) AS n, sum(ad) AS ads, sum(spend) AS spend, \
                      count(DISTINCT ad) AS distinct_ads FROM clicks GROUP BY country";

fn create_table(brokers: &str, topic: &str, options: &str) -> String {
    format!(
        "CREATE EXTERNAL TABLE clicks (ad BIGINT, country VARCHAR, spend BIGINT) STORED AS KAFKA \
         LOCATION '{brokers}/{topic}' OPTIONS ({options})"
    )
}

/// Every row as `a|b|c`, sorted.
fn rows(batches: &[RecordBatch]) -> Vec<String> {
    let mut rows = Vec::new();
    for batch in batches {
        let formatters: Vec<_> = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &FormatOptions::default()).unwrap())
            .collect();
        for row in 0..batch.num_rows() {
            let cells: Vec<String> = formatters
                .iter()
                .map(|f| f.value(row).to_string())
                .collect();
            rows.push(cells.join("|"));
        }
    }
    rows.sort();
    rows
}

/// A cluster of `workers` that keeps its tables and views under `dir`.
async fn cluster(workers: usize, dir: &std::path::Path) -> LocalCluster {
    LocalCluster::start_with(LocalClusterOptions {
        workers,
        coordinator: CoordinatorConfig {
            data_roots: vec![dir.to_path_buf()],
            table_dir: dir.join("tables"),
            heartbeat_timeout: Duration::from_secs(3),
            ..Default::default()
        },
        ..Default::default()
    })
    .await
    .unwrap()
}

async fn sql(client: &Client, sql: &str) -> QueryResult {
    client
        .sql(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// A topic `clicks` of `partitions` partitions holding `first` records, a cluster of
/// `workers` with the table `clicks` over it, and the view `by_country` of `REPORT` made.
struct ViewOverTopic {
    tansu: Tansu,
    produced: Produced,
    cluster: LocalCluster,
    client: Client,
    /// The answer of the CREATE MATERIALIZED VIEW.
    created: QueryResult,
    /// Holds the view's states: bind it (`_dir`, not `..`) for as long as the cluster runs.
    _dir: tempfile::TempDir,
}

async fn view_over_topic(partitions: i32, first: usize, workers: usize) -> ViewOverTopic {
    let tansu = Tansu::start();
    tansu.create_topic("clicks", partitions).await;
    let mut produced = Produced::default();
    produced.batch(&tansu, "clicks", partitions, first).await;
    let dir = tempfile::tempdir().unwrap();
    let cluster = cluster(workers, dir.path()).await;
    let client = cluster.client().await.unwrap();
    let table = create_table(&tansu.brokers, "clicks", "'format' 'json'");
    sql(&client, &table).await;
    let view = format!("CREATE MATERIALIZED VIEW by_country AS {REPORT}");
    let created = sql(&client, &view).await;
    ViewOverTopic {
        tansu,
        produced,
        cluster,
        client,
        created,
        _dir: dir,
    }
}

/// Task counts of the stages that read no other stage.
fn scan_tasks(metrics: &JobMetrics) -> Vec<u32> {
    metrics
        .stages
        .iter()
        .filter(|s| s.input_stages.is_empty())
        .map(|s| s.tasks)
        .collect()
}

/// (refresh kind, records read, offsets covered) of a create or refresh answer.
fn refreshed(result: &QueryResult) -> (String, String, String) {
    let row = rows(&result.batches).pop().unwrap();
    let cells: Vec<&str> = row.split('|').collect();
    (
        cells[1].to_string(),
        cells[2].to_string(),
        cells[3].to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_topic_reads_as_a_table_in_slices_of_its_partitions() {
    let tansu = Tansu::start();
    tansu.create_topic("clicks", 4).await;
    let mut produced = Produced::default();
    produced.batch(&tansu, "clicks", 4, 100).await;
    let cluster = LocalCluster::start(3).await.unwrap();
    let client = cluster.client().await.unwrap();
    sql(
        &client,
        &create_table(&tansu.brokers, "clicks", "'format' 'json'"),
    )
    .await;

    let whole = sql(&client, REPORT).await;
    assert_eq!(rows(&whole.batches), produced.report());
    assert_eq!(
        scan_tasks(&whole.metrics),
        vec![4],
        "one task per partition"
    );
    let sliced = run_with(
        &client,
        REPORT,
        &[("tally.kafka_max_records_per_task", "10")],
    )
    .await;
    assert_eq!(rows(&sliced.batches), produced.report());
    assert_eq!(
        scan_tasks(&sliced.metrics),
        vec![12],
        "25 records per partition in 10s"
    );

    let metadata = sql(
        &client,
        "SELECT _partition, count(*), min(_offset), max(_offset), count(_key), \
         min(_timestamp) > TIMESTAMP '2026-01-01 00:00:00' FROM clicks GROUP BY _partition",
    )
    .await;
    let expected: Vec<String> = (0..4).map(|p| format!("{p}|25|0|24|25|true")).collect();
    assert_eq!(rows(&metadata.batches), expected);
    let keys = sql(
        &client,
        "SELECT _key FROM clicks WHERE _partition = 1 AND _offset = 0",
    )
    .await;
    assert_eq!(rows(&keys.batches), vec!["user-1"]);

    let explain = sql(&client, &format!("EXPLAIN {REPORT}")).await;
    let plan = rows(&explain.batches).join("\n");
    assert!(
        plan.contains("KafkaScanExec: topic=clicks, format=json, 100 records in 4 slices"),
        "{plan}"
    );

    tansu.create_topic("lines", 1).await;
    tansu
        .produce("lines", 0, &[(None, "1,de,5"), (None, "2,\"f,r\",7")])
        .await;
    sql(
        &client,
        &format!(
            "CREATE EXTERNAL TABLE lines (ad BIGINT, country VARCHAR, spend BIGINT) STORED AS \
             KAFKA LOCATION '{}/lines' OPTIONS ('format' 'csv')",
            tansu.brokers
        ),
    )
    .await;
    let csv = sql(&client, "SELECT ad, country, spend, _key FROM lines").await;
    assert_eq!(rows(&csv.batches), vec!["1|de|5|", "2|f,r|7|"]);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_view_over_a_topic_takes_every_record_exactly_once() {
    let ViewOverTopic {
        tansu,
        mut produced,
        cluster,
        client,
        created,
        _dir,
        ..
    } = view_over_topic(4, 120, 3).await;
    assert_eq!(
        refreshed(&created),
        ("full".to_string(), "120".to_string(), "120".to_string())
    );
    let view = "SELECT * FROM by_country";
    assert_eq!(rows(&sql(&client, view).await.batches), produced.report());

    for (batch, size) in [(2, 37), (3, 1), (4, 250)] {
        produced.batch(&tansu, "clicks", 4, size).await;
        let refresh = sql(&client, "REFRESH MATERIALIZED VIEW by_country").await;
        let (kind, read, covered) = refreshed(&refresh);
        assert_eq!(
            (kind.as_str(), read),
            ("incremental", size.to_string()),
            "batch {batch}"
        );
        assert_eq!(covered, produced.records.to_string(), "batch {batch}");
        assert_eq!(
            rows(&sql(&client, view).await.batches),
            produced.report(),
            "batch {batch}"
        );
    }
    let nothing = sql(&client, "REFRESH MATERIALIZED VIEW by_country").await;
    assert_eq!(refreshed(&nothing).0, "none (nothing new)");
    let tables = client.list_tables().await.unwrap();
    let coverage = tables.iter().find(|t| t.name == "by_country").unwrap();
    assert!(
        format!("{coverage:?}").contains("up to date"),
        "{coverage:?}"
    );

    let by_range = client
        .sql("REFRESH MATERIALIZED VIEW by_country WHERE country = 'de'")
        .await
        .unwrap_err()
        .to_string();
    assert!(by_range.contains("not by range"), "{by_range}");
    let full = sql(&client, "REFRESH MATERIALIZED VIEW by_country FULL").await;
    assert_eq!(refreshed(&full).1, produced.records.to_string());
    assert_eq!(rows(&sql(&client, view).await.batches), produced.report());
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_lost_in_the_middle_of_a_refresh_costs_tasks_not_records() {
    let ViewOverTopic {
        tansu,
        mut produced,
        mut cluster,
        client,
        _dir,
        ..
    } = view_over_topic(4, 40, 3).await;

    produced.batch(&tansu, "clicks", 4, 4000).await;
    // 200 slices of 20 records: a worker is killed while it runs one, after others finished;
    // what it read and what it held must be read again, and count once.
    let settings: BTreeMap<String, String> = [("tally.kafka_max_records_per_task", "20")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let job = client
        .submit("REFRESH MATERIALIZED VIEW by_country", &settings)
        .await
        .unwrap();
    let victim = loop {
        let status = client.job(&job).await.unwrap();
        assert_eq!(
            status.state,
            JobState::Running,
            "the refresh ended before a worker was lost"
        );
        let scan = status
            .stages
            .iter()
            .find(|s| s.input_stages.is_empty())
            .expect("a scan stage");
        let done = scan
            .tasks
            .iter()
            .filter(|t| t.state == TaskState::Succeeded)
            .count();
        let running = scan
            .tasks
            .iter()
            .find(|t| t.state == TaskState::Running)
            .and_then(|t| t.worker_id.clone());
        if let (10.., Some(worker)) = (done, running) {
            break worker;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    assert!(cluster.kill_worker(victim.as_str()));
    client.wait(&job).await.unwrap();
    let status = client.job(&job).await.unwrap();
    let retried = status
        .stages
        .iter()
        .flat_map(|s| &s.tasks)
        .filter(|t| t.attempt > 0)
        .count();
    assert!(retried > 0, "no task ran again: {status:?}");
    assert_eq!(
        rows(&sql(&client, "SELECT * FROM by_country").await.batches),
        produced.report()
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn malformed_records_fail_with_their_offset_or_are_skipped() {
    let ViewOverTopic {
        tansu,
        produced,
        cluster,
        client,
        _dir,
        ..
    } = view_over_topic(1, 10, 2).await;
    let before = produced.report();

    tansu
        .produce(
            "clicks",
            0,
            &[
                (None, r#"{"ad": 1, "country": "de", "spend": 2}"#),
                (None, "oops"),
            ],
        )
        .await;
    let error = client
        .sql("REFRESH MATERIALIZED VIEW by_country")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("malformed record in Kafka topic 'clicks' partition 0 at offset 11"),
        "{error}"
    );
    assert!(!error.contains('\n'), "one line: {error}");
    assert_eq!(
        rows(&sql(&client, "SELECT * FROM by_country").await.batches),
        before,
        "the view as it was"
    );

    sql(
        &client,
        &format!(
            "CREATE EXTERNAL TABLE lenient (ad BIGINT, country VARCHAR, spend BIGINT) STORED AS \
             KAFKA LOCATION '{}/clicks' OPTIONS ('format' 'json', 'on_malformed' 'skip')",
            tansu.brokers
        ),
    )
    .await;
    let counted = sql(&client, "SELECT count(*), max(_offset) FROM lenient").await;
    assert_eq!(
        rows(&counted.batches),
        vec!["11|10"],
        "the good records, the bad one skipped"
    );
    let skipped: u64 = counted
        .metrics
        .stages
        .iter()
        .map(|s| s.malformed_records)
        .sum();
    assert_eq!(skipped, 1, "the job counts the record it skipped");
    let summary = tally_client::output::summarize(&counted.metrics, 1);
    assert!(summary.contains("skipped 1 malformed records"), "{summary}");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_missing_topic_or_broker_and_bad_declarations_are_one_line_errors() {
    let tansu = Tansu::start();
    let cluster = LocalCluster::start(1).await.unwrap();
    let client = cluster.client().await.unwrap();
    let fails = |sql: String| {
        let client = client.clone();
        async move { client.sql(&sql).await.unwrap_err().to_string() }
    };
    let missing = fails(create_table(&tansu.brokers, "nothing", "'format' 'json'")).await;
    assert!(
        missing.contains("Kafka topic 'nothing' does not exist"),
        "{missing}"
    );
    let port = tally_tests::process::free_port();
    let unreachable = fails(create_table(
        &format!("127.0.0.1:{port}"),
        "clicks",
        "'format' 'json'",
    ))
    .await;
    assert!(
        unreachable.contains("cannot reach the brokers"),
        "{unreachable}"
    );
    let location = fails(create_table("localhost", "clicks", "'format' 'json'")).await;
    assert!(location.contains("host:port/topic"), "{location}");
    let format = fails(create_table(&tansu.brokers, "clicks", "'format' 'avro'")).await;
    assert!(format.contains("json or csv"), "{format}");
    let clash = fails(format!(
        "CREATE EXTERNAL TABLE t (_offset BIGINT) STORED AS KAFKA LOCATION '{}/clicks'",
        tansu.brokers
    ))
    .await;
    assert!(clash.contains("rename"), "{clash}");
    for error in [&missing, &unreachable, &location, &format, &clash] {
        assert!(!error.contains('\n'), "one line: {error}");
    }
    assert_eq!(
        rows(&sql(&client, "SELECT 1").await.batches),
        vec!["1"],
        "the cluster stays up"
    );
    cluster.shutdown().await;
}

/// Not a test: measures how many records per second a 3-worker refresh consumes (run with
/// `cargo nextest run --workspace --run-ignored only -E 'test(records_per_second)'`); the
/// view must still equal everything produced.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a measurement: prints records per second of a refresh"]
async fn records_per_second_of_a_three_worker_refresh() {
    let ViewOverTopic {
        tansu,
        mut produced,
        cluster,
        client,
        _dir,
        ..
    } = view_over_topic(4, 1000, 3).await;
    let records = 400_000;
    for _ in 0..20 {
        produced.batch(&tansu, "clicks", 4, records / 20).await;
    }
    let started = std::time::Instant::now();
    let refresh = sql(&client, "REFRESH MATERIALIZED VIEW by_country").await;
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(refreshed(&refresh).1, records.to_string());
    assert_eq!(
        rows(&sql(&client, "SELECT * FROM by_country").await.batches),
        produced.report()
    );
    println!(
        "refresh of {records} records (4 partitions, 3 workers): {seconds:.2} s, {:.0} records/s",
        records as f64 / seconds
    );
    cluster.shutdown().await;
}
