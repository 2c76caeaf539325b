//! Security: the cluster token on every service (coordinator, worker control, worker Flight),
//! shuffle tickets bound to their piece, TLS with a certificate made here, no listening
//! beyond loopback without a token, and SQL confined to the data roots.

use std::time::Duration;

use arrow::array::Int64Array;
use arrow_flight::Ticket;
use arrow_flight::flight_service_client::FlightServiceClient;
use futures::TryStreamExt;
use prost::Message;
use tally_client::{Client, ClientError, LocalCluster, LocalClusterOptions};
use tally_common::auth::ClusterToken;
use tally_common::security::ClusterSecurity;
use tally_common::tls::ClusterTls;
use tally_coordinator::{CoordinatorConfig, start_coordinator};
use tally_proto::coordinator::ListWorkersRequest;
use tally_proto::coordinator::coordinator_service_client::CoordinatorServiceClient;
use tally_proto::plan::ShuffleTicket;
use tally_proto::worker::DropJobRequest;
use tally_proto::worker::worker_service_client::WorkerServiceClient;
use tally_tests::compare::assert_same_results;
use tally_tests::harness::{datafusion_answer, tally_binary, tpch_dir};
use tally_tests::process::{Process, free_port};
use tally_worker::{WorkerConfig, start_worker};
use tonic::Code;

const QUERY: &str = "SELECT n_regionkey, count(*) AS nations FROM nation \
                     GROUP BY n_regionkey ORDER BY n_regionkey";

async fn secured_cluster(security: ClusterSecurity) -> LocalCluster {
    let coordinator = CoordinatorConfig {
        security,
        ..Default::default()
    };
    let cluster = LocalCluster::start_with(LocalClusterOptions {
        workers: 2,
        coordinator,
        ..Default::default()
    })
    .await
    .expect("start a secured cluster");
    for table in ["nation", "region"] {
        cluster
            .register_table(table, tpch_dir().join(table).to_str().unwrap())
            .await
            .unwrap();
    }
    cluster
}

fn counts(batches: &[arrow::array::RecordBatch]) -> Vec<i64> {
    batches
        .iter()
        .flat_map(|b| {
            b.column(1)
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap()
                .values()
                .to_vec()
        })
        .collect()
}

/// The three kinds of caller: none, a wrong token, the right token.
fn callers(token: &ClusterToken) -> [(&'static str, ClusterSecurity); 3] {
    [
        ("no token", ClusterSecurity::default()),
        (
            "a wrong token",
            ClusterSecurity::new(Some(ClusterToken::random()), None),
        ),
        ("the token", ClusterSecurity::new(Some(token.clone()), None)),
    ]
}

fn assert_refused<T: std::fmt::Debug>(who: &str, service: &str, result: Result<T, tonic::Status>) {
    let status = result.expect_err(&format!("{service} answered a call with {who}"));
    assert_eq!(
        status.code(),
        Code::Unauthenticated,
        "{service}, {who}: {status}"
    );
    let expected = if who == "no token" {
        "missing cluster token"
    } else {
        "wrong cluster token"
    };
    assert!(
        status.message().contains(expected),
        "{service}, {who}: {}",
        status.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_service_refuses_calls_without_the_cluster_token() {
    let token = ClusterToken::random();
    let cluster = secured_cluster(ClusterSecurity::new(Some(token.clone()), None)).await;

    // With the token, a query with an exchange runs: workers registered, heartbeat, fetched
    // each other's pieces and served the answer, all with the token.
    let client = cluster.client().await.unwrap();
    let job = client.submit(QUERY, &Default::default()).await.unwrap();
    let status = client.wait(&job).await.unwrap();
    let result = client.fetch_results(&status).await.unwrap();
    assert_eq!(counts(&result.batches), vec![5, 5, 5, 5, 5]);
    let result_ticket = status.results[0].ticket(status.result_compression);

    for (who, security) in callers(&token) {
        // The coordinator service.
        let channel = security
            .lazy_channel(cluster.endpoint(), Duration::from_secs(5))
            .unwrap();
        let answer = CoordinatorServiceClient::new(channel)
            .list_workers(ListWorkersRequest {})
            .await;
        // The client library says so in one line, naming the coordinator.
        let library = Client::connect_with(cluster.endpoint(), security.clone())
            .await
            .unwrap()
            .list_workers()
            .await;
        if who == "the token" {
            assert_eq!(answer.unwrap().into_inner().workers.len(), 2);
            library.unwrap();
        } else {
            assert_refused(who, "coordinator", answer);
            let error = library.unwrap_err();
            assert!(
                matches!(error, ClientError::Unauthenticated { .. }),
                "{error:?}"
            );
            assert!(error.to_string().contains(cluster.endpoint()), "{error}");
        }

        for endpoint in cluster.worker_endpoints() {
            // The worker's control service.
            let channel = security
                .lazy_channel(&endpoint, Duration::from_secs(5))
                .unwrap();
            let dropped = WorkerServiceClient::new(channel.clone())
                .drop_job(DropJobRequest {
                    job_id: "nosuchjob".to_string(),
                })
                .await;
            // The worker's Flight service.
            let fetched = FlightServiceClient::new(channel)
                .do_get(Ticket {
                    ticket: result_ticket.encode_to_vec().into(),
                })
                .await;
            if who == "the token" {
                dropped.unwrap();
            } else {
                assert_refused(who, "worker control", dropped);
                assert_refused(who, "worker Flight", fetched);
            }
        }
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shuffle_tickets_serve_only_the_piece_they_were_issued_for() {
    let token = ClusterToken::random();
    let security = ClusterSecurity::new(Some(token.clone()), None);
    let cluster = secured_cluster(security.clone()).await;
    let client = cluster.client().await.unwrap();
    let job = client.submit(QUERY, &Default::default()).await.unwrap();
    let status = client.wait(&job).await.unwrap();
    let location = &status.results[0];
    let ticket = location.ticket(status.result_compression);
    assert_eq!(ticket.mac.len(), 32, "an HMAC-SHA256 per piece");
    let flight = || {
        FlightServiceClient::new(
            security
                .lazy_channel(&location.endpoint, Duration::from_secs(5))
                .unwrap(),
        )
    };
    let fetch = |ticket: ShuffleTicket| async move {
        flight()
            .do_get(Ticket {
                ticket: ticket.encode_to_vec().into(),
            })
            .await
    };

    // The issued ticket fetches its piece.
    let stream = fetch(ticket.clone()).await.unwrap().into_inner();
    let messages: Vec<_> = stream.try_collect().await.unwrap();
    assert!(messages.len() >= 2, "schema and at least one batch");

    // Any change to what it names, or to its MAC, is refused before the disk is touched.
    type Change = Box<dyn Fn(&mut ShuffleTicket)>;
    let variants: [(&str, Change); 6] = [
        (
            "another job",
            Box::new(|t| t.job_id = "0123456789ab".into()),
        ),
        ("a path", Box::new(|t| t.job_id = "../../../etc".into())),
        ("another stage", Box::new(|t| t.stage_id += 1)),
        ("another task", Box::new(|t| t.map_partition += 1)),
        ("another partition", Box::new(|t| t.out_partition += 1)),
        ("a guessed MAC", Box::new(|t| t.mac = vec![0; 32])),
    ];
    for (what, change) in variants {
        let mut forged = ticket.clone();
        change(&mut forged);
        let status = fetch(forged).await.expect_err(what);
        assert_eq!(status.code(), Code::PermissionDenied, "{what}: {status}");
        assert!(
            status.message().contains("was not issued by worker"),
            "{what}: {}",
            status.message()
        );
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tls_with_a_self_signed_certificate_carries_every_call() {
    let made =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap();
    let cert = made.cert.pem();
    let key = made.signing_key.serialize_pem();
    let tls = ClusterTls::from_pem(&cert, &key, &cert);
    let token = ClusterToken::random();
    let security = ClusterSecurity::new(Some(token.clone()), Some(tls));
    let cluster = secured_cluster(security.clone()).await;

    // Client to coordinator, coordinator to workers, workers to each other and the client to
    // the workers all speak TLS: the answer is right.
    let client = cluster.client().await.unwrap();
    let result = client.sql(QUERY).await.unwrap();
    assert_same_results(
        QUERY,
        &datafusion_answer(QUERY).await,
        &result.batches,
        true,
    );

    // Plaintext is not answered. (The TLS server's bytes are no HTTP/2 the client can read;
    // what it reports depends on when the connection breaks: a transport error, an h2
    // protocol error, or a cancelled operation.)
    let plain = ClusterSecurity::new(Some(token.clone()), None);
    let answer = Client::connect_with(cluster.endpoint(), plain)
        .await
        .unwrap()
        .list_workers()
        .await;
    assert!(answer.is_err(), "a plaintext call was answered: {answer:?}");

    // Nor is a client that trusts another certificate.
    let other = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let other_pem = other.cert.pem();
    let stranger = ClusterSecurity::new(
        Some(token),
        Some(ClusterTls::from_pem(
            &other_pem,
            &other.signing_key.serialize_pem(),
            &other_pem,
        )),
    );
    let error = Client::connect_with(cluster.endpoint(), stranger)
        .await
        .err()
        .expect("a certificate from an unknown CA is refused");
    assert!(error.to_string().contains("certificate"), "{error}");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listening_beyond_loopback_needs_a_token() {
    let everywhere = "0.0.0.0:0".parse().unwrap();
    let error = start_coordinator(CoordinatorConfig {
        bind: everywhere,
        ..Default::default()
    })
    .await
    .err()
    .expect("a coordinator without a token on 0.0.0.0 is refused")
    .to_string();
    assert!(
        error.contains("refusing to listen on 0.0.0.0:0 without a cluster token"),
        "{error}"
    );
    let mut worker = WorkerConfig::local("127.0.0.1:1", std::env::temp_dir());
    worker.bind = everywhere;
    let error = start_worker(worker)
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(error.contains("without a cluster token"), "{error}");

    // With a token it listens there.
    let coordinator = start_coordinator(CoordinatorConfig {
        bind: everywhere,
        security: ClusterSecurity::new(Some(ClusterToken::random()), None),
        ..Default::default()
    })
    .await
    .unwrap();
    coordinator.shutdown().await;

    // The CLI says why in one line and exits non-zero.
    let output = std::process::Command::new(tally_binary())
        .args(["coordinator", "--bind", "0.0.0.0:0"])
        .env_remove(tally_common::auth::TOKEN_ENV)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr
            .trim()
            .starts_with("error: refusing to listen on 0.0.0.0:0 without a cluster token"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sql_reads_and_writes_tables_only_under_the_data_roots() {
    let root = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("labels.csv"), "k,label\n0,zero\n1,one\n").unwrap();
    std::fs::write(outside.path().join("secret.csv"), "k,secret\n0,hush\n").unwrap();
    std::os::unix::fs::symlink(
        outside.path().join("secret.csv"),
        root.path().join("link.csv"),
    )
    .unwrap();
    let cluster = tally_tests::harness::cluster_with_data_roots(2, &[root.path()]).await;
    cluster
        .register_table("nation", tpch_dir().join("nation").to_str().unwrap())
        .await
        .unwrap();
    let client = cluster.client().await.unwrap();

    // Inside the root: readable.
    let labels = root.path().join("labels.csv");
    client
        .sql(&format!(
            "CREATE EXTERNAL TABLE labels STORED AS CSV LOCATION '{}' OPTIONS ('format.has_header' 'true')",
            labels.display()
        ))
        .await
        .unwrap();
    let result = client.sql("SELECT count(*) FROM labels").await.unwrap();
    assert_eq!(result.num_rows(), 1);

    let secret = outside.path().join("secret.csv");
    let escapes = [
        "/etc/passwd".to_string(),
        secret.display().to_string(),
        root.path()
            .join("../")
            .join(outside.path().file_name().unwrap())
            .join("secret.csv")
            .display()
            .to_string(),
        root.path().join("link.csv").display().to_string(),
        "file:///etc/passwd".to_string(),
    ];
    for path in &escapes {
        let error = client
            .sql(&format!(
                "CREATE EXTERNAL TABLE stolen STORED AS CSV LOCATION '{path}'"
            ))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            error.contains(path.as_str())
                && (error.contains("outside the data roots") || error.contains("not URLs")),
            "{path}: {error}"
        );
        let error = client
            .register_table("stolen", path)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("outside the data roots") || error.contains("not URLs"),
            "{error}"
        );
    }

    // Tables are written only under a root too.
    let error = client
        .sql(&format!(
            "CREATE TABLE n_out WITH (bucket_by = 'n_nationkey', buckets = 2, location = '{}') \
             AS SELECT * FROM nation",
            outside.path().join("n").display()
        ))
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("outside the data roots"), "{error}");
    assert!(!outside.path().join("n").exists());
    let inside = root.path().join("n");
    client
        .sql(&format!(
            "CREATE TABLE n_in WITH (bucket_by = 'n_nationkey', buckets = 2, location = '{}') \
             AS SELECT * FROM nation",
            inside.display()
        ))
        .await
        .unwrap();
    assert!(inside.join("bucket-00000.parquet").exists());
    let result = client.sql("SELECT count(*) FROM n_in").await.unwrap();
    let count = result.batches[0]
        .column(0)
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap()
        .value(0);
    assert_eq!(count, 25);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tally_processes_speak_tls_from_pem_files_and_workers_need_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    let token_file = dir.path().join("token");
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    std::fs::write(&token_file, ClusterToken::random().expose_secret()).unwrap();
    let [cert, key, token_file] = [&cert, &key, &token_file].map(|p| p.to_str().unwrap());
    let tls = ["--tls-cert", cert, "--tls-key", key, "--tls-ca", cert];
    let coordinator = format!("127.0.0.1:{}", free_port());
    let nation = format!("nation={}", tpch_dir().join("nation").display());

    let mut args = vec!["coordinator", "--bind", &coordinator, "--table", &nation];
    args.extend(["--token-file", token_file]);
    args.extend(tls);
    let (_coordinator, _) = Process::start_with_env("coordinator", &args, &[]);
    let spool = dir.path().join("spool");
    let mut args = vec!["worker", "--coordinator", &coordinator];
    args.extend([
        "--spool-dir",
        spool.to_str().unwrap(),
        "--token-file",
        token_file,
    ]);
    args.extend(tls);
    let (_worker, _) = Process::start_with_env("worker", &args, &[]);

    // The CLI over TLS with the token: the right answer.
    let output = std::process::Command::new(tally_binary())
        .args([
            "sql",
            "--coordinator",
            &coordinator,
            "--format",
            "csv",
            "-e",
            QUERY,
        ])
        .args(["--token-file", token_file, "--tls-ca", cert])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "n_regionkey,nations\n0,5\n1,5\n2,5\n3,5\n4,5\n"
    );

    // A worker without the token gives up at once, saying why.
    let output = std::process::Command::new(tally_binary())
        .args(["worker", "--coordinator", &coordinator, "--tls-ca", cert])
        .args(["--tls-cert", cert, "--tls-key", key])
        .env_remove(tally_common::auth::TOKEN_ENV)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last = stderr.trim().lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: cannot register") && last.contains("missing cluster token"),
        "{stderr}"
    );
}
