//! Tables in S3-compatible object storage, against a real moto_server per test: Parquet and
//! CSV tables at `s3://bucket/prefix/` give the answers single-process DataFusion gives on the
//! local copies (the workers read their splits from the store: nothing else holds the
//! objects); credentials from table options or from the `AWS_*` environment of separate
//! `tally` processes; secrets stay out of `tally tables` and the job history; wrong
//! credentials and a missing bucket are one-line errors after which the cluster still serves.

use std::path::Path;

use datafusion::prelude::{CsvReadOptions, SessionContext};
use tally_client::tpch::{TPCH_QUERIES, TPCH_TABLES};
use tally_client::{Client, LocalCluster, LocalClusterOptions};
use tally_coordinator::CoordinatorConfig;
use tally_tests::compare::{assert_same_results, query_is_ordered};
use tally_tests::harness::{datafusion_answer, tpch_dir};
use tally_tests::moto::Moto;
use tally_tests::process::Process;

const BUCKET: &str = "tally-tpch";

/// A moto_server holding the TPC-H tables under `s3://tally-tpch/sf001/<table>/` and a CSV
/// folder under `s3://tally-tpch/labels/`, whose local copy is returned.
fn moto_with_tpch(csv: &Path) -> Moto {
    std::fs::create_dir_all(csv).unwrap();
    std::fs::write(csv.join("part-0.csv"), "r_regionkey,label\n0,zero\n1,one\n").unwrap();
    std::fs::write(csv.join("part-1.csv"), "r_regionkey,label\n2,two\n4,four\n").unwrap();
    let targets: Vec<(String, std::path::PathBuf)> = TPCH_TABLES
        .iter()
        .map(|t| (format!("s3://{BUCKET}/sf001/{t}"), tpch_dir().join(t)))
        .chain([(format!("s3://{BUCKET}/labels"), csv.to_path_buf())])
        .collect();
    let uploads: Vec<(&str, &Path)> = targets
        .iter()
        .map(|(t, p)| (t.as_str(), p.as_path()))
        .collect();
    Moto::start(&[BUCKET], &uploads)
}

/// A cluster of `workers` whose SQL may write tables (views) under `dir`.
async fn cluster(workers: usize, dir: &Path) -> LocalCluster {
    LocalCluster::start_with(LocalClusterOptions {
        workers,
        coordinator: CoordinatorConfig {
            data_roots: vec![dir.to_path_buf()],
            table_dir: dir.join("tables"),
            ..Default::default()
        },
        ..Default::default()
    })
    .await
    .expect("start local cluster")
}

async fn create_s3_tables(client: &Client, moto: &Moto) {
    for table in TPCH_TABLES {
        client
            .sql(&format!(
                "CREATE EXTERNAL TABLE {table} STORED AS PARQUET LOCATION \
                 's3://{BUCKET}/sf001/{table}/' {}",
                moto.table_options(&moto.secret_access_key)
            ))
            .await
            .unwrap_or_else(|e| panic!("register {table} from S3: {e}"));
    }
}

/// The error of `sql`, checked to be one line.
async fn one_line_error(client: &Client, sql: &str) -> String {
    let error = client
        .sql(sql)
        .await
        .expect_err("the statement must fail")
        .to_string();
    assert_eq!(
        error.trim().lines().count(),
        1,
        "error spans lines: {error}"
    );
    error
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tpch_and_csv_tables_in_s3_answer_like_the_local_files() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("labels");
    let moto = moto_with_tpch(&csv);
    let cluster = cluster(3, dir.path()).await;
    let client = cluster.client().await.unwrap();
    create_s3_tables(&client, &moto).await;

    for (name, sql) in TPCH_QUERIES {
        let expected = datafusion_answer(sql).await;
        let actual = client
            .sql(sql)
            .await
            .unwrap_or_else(|e| panic!("{name} from S3 failed: {e}"));
        assert_same_results(name, &expected, &actual.batches, query_is_ordered(sql));
    }

    // A folder of CSV objects with header rows.
    client
        .sql(&format!(
            "CREATE EXTERNAL TABLE labels STORED AS CSV LOCATION 's3://{BUCKET}/labels/' {}",
            moto.table_options(&moto.secret_access_key)
        ))
        .await
        .unwrap();
    let join = "SELECT label, count(*) AS nations FROM nation JOIN labels \
                ON n_regionkey = r_regionkey GROUP BY label ORDER BY label";
    let local = SessionContext::new();
    local
        .register_csv("labels", csv.to_str().unwrap(), CsvReadOptions::new())
        .await
        .unwrap();
    let nation = tpch_dir().join("nation");
    local
        .register_parquet("nation", nation.to_str().unwrap(), Default::default())
        .await
        .unwrap();
    let expected = local.sql(join).await.unwrap().collect().await.unwrap();
    let actual = client.sql(join).await.unwrap();
    assert_same_results("csv join", &expected, &actual.batches, true);

    // The catalog and the job history show where the tables are, never the secret.
    let tables = client.list_tables().await.unwrap();
    let lineitem = tables.iter().find(|t| t.name == "lineitem").unwrap();
    assert_eq!(lineitem.path, format!("s3://{BUCKET}/sf001/lineitem/"));
    assert_eq!(lineitem.format, "parquet");
    assert!(!format!("{tables:?}").contains(&moto.secret_access_key));
    let jobs = client.list_jobs().await.unwrap();
    assert!(jobs.iter().any(|j| j.sql.contains("aws.secret_access_key")));
    assert!(!format!("{jobs:?}").contains(&moto.secret_access_key));
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wrong_credentials_and_a_missing_bucket_are_one_line_errors_and_the_cluster_serves_on() {
    let dir = tempfile::tempdir().unwrap();
    let moto = moto_with_tpch(&dir.path().join("labels"));
    let cluster = cluster(2, dir.path()).await;
    let client = cluster.client().await.unwrap();
    create_s3_tables(&client, &moto).await;

    let wrong_secret = one_line_error(
        &client,
        &format!(
            "CREATE EXTERNAL TABLE t STORED AS PARQUET LOCATION 's3://{BUCKET}/sf001/orders/' {}",
            moto.table_options("not-the-secret")
        ),
    )
    .await;
    assert!(
        wrong_secret.contains(&format!("bucket {BUCKET}"))
            && wrong_secret.contains("refused the credentials"),
        "{wrong_secret}"
    );
    assert!(!wrong_secret.contains("not-the-secret"), "{wrong_secret}");

    let unknown_key = one_line_error(
        &client,
        &format!(
            "CREATE EXTERNAL TABLE t STORED AS PARQUET LOCATION 's3://{BUCKET}/sf001/orders/' {}",
            moto.table_options(&moto.secret_access_key)
                .replace(&moto.access_key_id, "AKIANOSUCHKEY0000000")
        ),
    )
    .await;
    assert!(
        unknown_key.contains("refused the credentials"),
        "{unknown_key}"
    );

    let missing = one_line_error(
        &client,
        &format!(
            "CREATE EXTERNAL TABLE t STORED AS PARQUET LOCATION 's3://no-such-bucket/t/' {}",
            moto.table_options(&moto.secret_access_key)
        ),
    )
    .await;
    assert!(
        missing.contains("bucket no-such-bucket does not exist"),
        "{missing}"
    );

    let empty = one_line_error(
        &client,
        &format!(
            "CREATE EXTERNAL TABLE t STORED AS PARQUET LOCATION 's3://{BUCKET}/nothing/' {}",
            moto.table_options(&moto.secret_access_key)
        ),
    )
    .await;
    assert!(empty.contains("no objects under"), "{empty}");

    let ctas = one_line_error(
        &client,
        &format!(
            "CREATE TABLE o WITH (bucket_by = 'o_orderkey', buckets = 2, \
             location = 's3://{BUCKET}/sf001/orders/') AS SELECT * FROM orders"
        ),
    )
    .await;
    assert!(ctas.contains("the prefix is not empty"), "{ctas}");

    // None of it broke the cluster or the tables it had.
    let sql = "SELECT count(*) FROM orders";
    let expected = datafusion_answer(sql).await;
    let actual = client.sql(sql).await.unwrap();
    assert_same_results(sql, &expected, &actual.batches, false);
    let names: Vec<String> = client
        .list_tables()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert!(!names.contains(&"t".to_string()), "{names:?}");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_materialized_view_over_an_s3_table_answers_like_its_query() {
    let dir = tempfile::tempdir().unwrap();
    let moto = moto_with_tpch(&dir.path().join("labels"));
    let cluster = cluster(3, dir.path()).await;
    let client = cluster.client().await.unwrap();
    create_s3_tables(&client, &moto).await;
    let query = "SELECT l_returnflag, l_linestatus, sum(l_quantity) AS qty, count(*) AS n, \
                 avg(l_discount) AS disc FROM lineitem GROUP BY l_returnflag, l_linestatus";
    client
        .sql(&format!("CREATE MATERIALIZED VIEW flags AS {query}"))
        .await
        .unwrap();
    let expected = datafusion_answer(query).await;
    let view = client.sql("SELECT * FROM flags").await.unwrap();
    assert_same_results("view over S3", &expected, &view.batches, false);
    client.sql("REFRESH MATERIALIZED VIEW flags").await.unwrap();
    let view = client.sql("SELECT * FROM flags").await.unwrap();
    assert_same_results("view over S3, refreshed", &expected, &view.batches, false);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bucketed_table_written_to_s3_reads_back_like_its_query() {
    let dir = tempfile::tempdir().unwrap();
    let moto = moto_with_tpch(&dir.path().join("labels"));
    let cluster = cluster(3, dir.path()).await;
    let client = cluster.client().await.unwrap();
    create_s3_tables(&client, &moto).await;
    let location = format!("s3://{BUCKET}/out/orders_by_customer/");
    let create = format!(
        "CREATE TABLE orders_by_customer WITH (bucket_by = 'o_custkey', buckets = 4, \
         location = '{location}') AS SELECT o_custkey, o_orderkey, o_totalprice FROM orders"
    );
    client.sql(&create).await.unwrap();

    let tables = client.list_tables().await.unwrap();
    let written = tables
        .iter()
        .find(|t| t.name == "orders_by_customer")
        .unwrap();
    assert_eq!(written.path, location);
    assert_eq!(
        written.bucketing.as_deref(),
        Some("4 buckets by (o_custkey)")
    );
    // Registered again from the bucket, the table is read by bucket too.
    client
        .sql(&format!(
            "CREATE EXTERNAL TABLE registered STORED AS PARQUET LOCATION '{location}' {}",
            moto.table_options(&moto.secret_access_key)
        ))
        .await
        .unwrap();
    let tables = client.list_tables().await.unwrap();
    let registered = tables.iter().find(|t| t.name == "registered").unwrap();
    assert_eq!(registered.bucketing, written.bucketing);
    let report = "SELECT o_custkey % 7 AS k, count(*) AS n, sum(o_totalprice) AS total \
                  FROM {} GROUP BY o_custkey % 7 ORDER BY k";
    let expected = datafusion_answer(&report.replace("{}", "orders")).await;
    let actual = client
        .sql(&report.replace("{}", "orders_by_customer"))
        .await
        .unwrap();
    assert_same_results("bucketed table in S3", &expected, &actual.batches, true);
    let again = client
        .sql(&report.replace("{}", "registered"))
        .await
        .unwrap();
    assert_same_results("registered from S3", &expected, &again.batches, true);

    let again = create.replace("orders_by_customer WITH", "orders_again WITH");
    let error = one_line_error(&client, &again).await;
    assert!(error.contains("the prefix is not empty"), "{error}");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tally_processes_read_s3_tables_with_their_aws_environment() {
    let dir = tempfile::tempdir().unwrap();
    let moto = moto_with_tpch(&dir.path().join("labels"));
    let env: Vec<(&str, String)> = moto.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut logged = env.clone();
    logged.push(("RUST_LOG", "debug"));
    let coordinator = format!("127.0.0.1:{}", tally_tests::process::free_port());
    let lineitem = format!("lineitem=s3://{BUCKET}/sf001/lineitem/");
    let log = dir.path().join("coordinator.log");
    let (_coordinator, _) = Process::start_logged(
        "coordinator",
        &["coordinator", "--bind", &coordinator, "--table", &lineitem],
        &logged,
        &log,
    );
    let _workers = start_workers(dir.path(), &coordinator, &logged);
    let client = Client::connect(&coordinator).await.unwrap();
    // The coordinator registers its --table after it starts listening.
    wait_for_cluster(&client, 2, 1, &log).await;

    let sql = "SELECT l_shipmode, count(*) AS n, sum(l_extendedprice) AS price \
               FROM lineitem GROUP BY l_shipmode";
    let expected = datafusion_answer(sql).await;
    let actual = client.sql(sql).await.unwrap();
    assert_same_results(sql, &expected, &actual.batches, false);
    let tables = client.list_tables().await.unwrap();
    assert_eq!(tables[0].path, format!("s3://{BUCKET}/sf001/lineitem/"));

    // A table whose options carry the secret: the workers receive it with the job.
    client
        .sql(&format!(
            "CREATE EXTERNAL TABLE orders STORED AS PARQUET LOCATION 's3://{BUCKET}/sf001/orders/' {}",
            moto.table_options(&moto.secret_access_key)
        ))
        .await
        .unwrap();
    let sql = "SELECT o_orderpriority, count(*) AS n FROM orders GROUP BY o_orderpriority";
    let expected = datafusion_answer(sql).await;
    let actual = client.sql(sql).await.unwrap();
    assert_same_results(sql, &expected, &actual.batches, false);

    // Debug logs of the coordinator and the workers never hold the secret.
    for i in 0..2 {
        let worker_log = std::fs::read_to_string(dir.path().join(format!("worker-{i}.log")));
        assert!(!worker_log.unwrap().contains(&moto.secret_access_key));
    }
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("table registered"), "{log}");
    let leaks: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(&moto.secret_access_key))
        .collect();
    assert!(leaks.is_empty(), "{leaks:#?}");
}

/// Two `tally worker` processes of the coordinator at `coordinator` with `env`, spooling
/// and logging under `dir` (`worker-<i>.log`).
fn start_workers(dir: &Path, coordinator: &str, env: &[(&str, &str)]) -> Vec<Process> {
    (0..2)
        .map(|i| {
            let spool = dir.join(format!("w{i}"));
            let args = [
                "worker",
                "--coordinator",
                coordinator,
                "--spool-dir",
                spool.to_str().unwrap(),
            ];
            let log = dir.join(format!("worker-{i}.log"));
            Process::start_logged("worker", &args, env, &log).0
        })
        .collect()
}

/// Polls until the coordinator at `client` lists `workers` alive workers and `tables` tables.
async fn wait_for_cluster(client: &Client, workers: usize, tables: usize, log: &Path) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    // A coordinator that has just started may not lead yet: its answers are errors then.
    let ready = || async {
        let alive = match client.list_workers().await {
            Ok(listed) => listed.iter().filter(|w| w.alive).count(),
            Err(_) => 0,
        };
        let listed = client.list_tables().await.map_or(0, |t| t.len());
        alive >= workers && listed >= tables
    };
    while !ready().await {
        assert!(
            std::time::Instant::now() < deadline,
            "no {workers} workers and {tables} tables: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_kept_in_s3_and_its_tables_endpoint_outlive_the_coordinator() {
    use tally_tests::etcd::{Etcd, unique_cluster};

    let dir = tempfile::tempdir().unwrap();
    let moto = moto_with_tpch(&dir.path().join("labels"));
    let etcd = Etcd::start();
    let cluster_name = unique_cluster("s3-views");
    // Only the credentials come from the environment: the endpoint is the table's option,
    // which the cluster state must keep for the next coordinator.
    let env = [
        ("AWS_ACCESS_KEY_ID", moto.access_key_id.as_str()),
        ("AWS_SECRET_ACCESS_KEY", moto.secret_access_key.as_str()),
    ];
    let coordinator = format!("127.0.0.1:{}", tally_tests::process::free_port());
    let coordinator_args = [
        "coordinator",
        "--bind",
        &coordinator,
        "--etcd",
        &etcd.endpoint,
        "--cluster",
        &cluster_name,
    ];
    let log = dir.path().join("coordinator.log");
    let (first, _) = Process::start_logged("coordinator", &coordinator_args, &env, &log);
    let _workers = start_workers(dir.path(), &coordinator, &env);
    let client = Client::connect(&coordinator).await.unwrap();
    wait_for_cluster(&client, 2, 0, &log).await;
    client
        .sql(&format!(
            "CREATE EXTERNAL TABLE orders STORED AS PARQUET LOCATION \
             's3://{BUCKET}/sf001/orders/' OPTIONS ('aws.endpoint' '{}', 'aws.region' '{}', \
             'aws.allow_http' 'true')",
            moto.endpoint,
            tally_tests::moto::REGION
        ))
        .await
        .unwrap();
    let query = "SELECT o_orderstatus, count(*) AS n, sum(o_totalprice) AS total \
                 FROM orders GROUP BY o_orderstatus";
    let location = format!("s3://{BUCKET}/views/by_status");
    client
        .sql(&format!(
            "CREATE MATERIALIZED VIEW by_status WITH (buckets = 2, location = '{location}') \
             AS {query}"
        ))
        .await
        .unwrap();
    let expected = datafusion_answer(query).await;
    let view = client.sql("SELECT * FROM by_status").await.unwrap();
    assert_same_results("view kept in S3", &expected, &view.batches, false);
    first.stop();

    let (_second, _) = Process::start_logged("coordinator", &coordinator_args, &env, &log);
    let client = Client::connect(&coordinator).await.unwrap();
    wait_for_cluster(&client, 2, 2, &log).await;
    let tables = client.list_tables().await.unwrap();
    let by_status = tables.iter().find(|t| t.name == "by_status").unwrap();
    assert_eq!(by_status.path, location);
    let view = client.sql("SELECT * FROM by_status").await.unwrap();
    assert_same_results("view after a restart", &expected, &view.batches, false);
    let sql = "SELECT count(*) FROM orders";
    let actual = client.sql(sql).await.unwrap();
    assert_same_results(sql, &datafusion_answer(sql).await, &actual.batches, false);
    client
        .sql("REFRESH MATERIALIZED VIEW by_status FULL")
        .await
        .unwrap();
    let view = client.sql("SELECT * FROM by_status").await.unwrap();
    assert_same_results(
        "view refreshed after a restart",
        &expected,
        &view.batches,
        false,
    );
}
