//! The coordinator's web UI (`--http-bind`) and the Prometheus metrics of the coordinator and
//! the workers, over plain HTTP/1.1: the job's graph arrows carry its stages' shuffle bytes,
//! the byte counters equal the jobs' figures, and the cluster token guards every page. The
//! browser-driven tests are in `python/tests/test_ui.py`.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use tally_client::{LocalCluster, LocalClusterOptions};
use tally_common::auth::ClusterToken;
use tally_common::security::ClusterSecurity;
use tally_coordinator::{CoordinatorConfig, start_coordinator};
use tally_tests::harness::tpch_dir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A GET over a fresh connection: the status code and the body.
async fn get(url: &str, token: Option<&str>) -> (u16, String) {
    let rest = url.strip_prefix("http://").expect("an http URL");
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let mut stream = TcpStream::connect(host).await.expect("connect");
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{auth}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let response = String::from_utf8(response).expect("a text response");
    let (head, body) = response.split_once("\r\n\r\n").expect("headers end");
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status, body)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap();
        if size == 0 {
            break;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
    out
}

/// A sample's value in a Prometheus text exposition.
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{name} missing from\n{text}"))
        .parse()
        .unwrap()
}

async fn cluster_with_ui(token: &ClusterToken) -> LocalCluster {
    let cluster = LocalCluster::start_with(LocalClusterOptions {
        workers: 2,
        coordinator: CoordinatorConfig {
            security: ClusterSecurity::new(Some(token.clone()), None),
            http_bind: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            ..Default::default()
        },
        ..Default::default()
    })
    .await
    .expect("start a cluster with its web UI");
    for table in ["orders", "lineitem"] {
        cluster
            .register_table(table, tpch_dir().join(table).to_str().unwrap())
            .await
            .unwrap();
    }
    cluster
}

#[tokio::test(flavor = "multi_thread")]
async fn the_graph_and_the_metrics_show_the_jobs_shuffle_bytes_to_token_holders_only() {
    let token = ClusterToken::random();
    let cluster = cluster_with_ui(&token).await;
    let ui = cluster.http_endpoint().expect("the UI listens").to_string();
    let client = cluster.client().await.unwrap();
    let settings: BTreeMap<String, String> =
        [("tally.planner".to_string(), "naive".to_string())].into();
    let result = client
        .sql_with_settings(
            "SELECT o_orderpriority, count(*) FROM orders JOIN lineitem ON o_orderkey = l_orderkey \
             GROUP BY o_orderpriority",
            &settings,
        )
        .await
        .unwrap();
    let metrics = result.metrics;
    assert!(metrics.stages.len() >= 3, "{metrics:?}");
    let secret = Some(token.expose_secret());

    let (status, _) = get(&format!("{ui}/api/jobs/{}", metrics.job_id), None).await;
    assert_eq!(status, 401);
    let (status, page) = get(&format!("{ui}/jobs/{}", metrics.job_id), None).await;
    assert_eq!(status, 401);
    assert!(page.contains("name=\"token\""), "a log-in form: {page}");

    let (status, body) = get(&format!("{ui}/api/jobs/{}", metrics.job_id), secret).await;
    assert_eq!(status, 200, "{body}");
    let job: serde_json::Value = serde_json::from_str(&body).unwrap();
    let edges = job["edges"].as_array().unwrap();
    for stage in &metrics.stages {
        for input in &stage.input_stages {
            let producer = metrics
                .stages
                .iter()
                .find(|s| s.stage_id == *input)
                .unwrap();
            let edge = edges
                .iter()
                .find(|e| e["from"] == *input && e["to"] == stage.stage_id)
                .unwrap_or_else(|| panic!("no arrow {input} -> {}: {job}", stage.stage_id));
            assert_eq!(edge["bytes"], producer.shuffle_bytes);
        }
    }
    // A stage whose readers all run where its output lies ships nothing; the job does ship.
    assert!(metrics.shuffle_bytes > 0, "{metrics:?}");
    let (status, page) = get(&format!("{ui}/jobs/{}", metrics.job_id), secret).await;
    assert_eq!(status, 200);
    assert!(page.contains("<svg"), "{page}");

    let (_, text) = get(&format!("{ui}/metrics"), secret).await;
    assert_eq!(
        sample(&text, "tally_shuffle_bytes_total"),
        metrics.shuffle_bytes as f64
    );
    assert_eq!(sample(&text, "tally_jobs{state=\"succeeded\"}"), 1.0);
    assert_eq!(sample(&text, "tally_workers{state=\"alive\"}"), 2.0);

    let mut served = 0.0;
    for worker in cluster.worker_endpoints() {
        let url = format!("http://{worker}/metrics");
        assert_eq!(get(&url, None).await.0, 401);
        let (status, text) = get(&url, secret).await;
        assert_eq!(status, 200, "{text}");
        served += sample(&text, "tally_worker_flight_bytes_served_total");
        assert!(sample(&text, "tally_worker_tasks_total{outcome=\"succeeded\"}") > 0.0);
    }
    assert!(
        served >= metrics.shuffle_bytes as f64,
        "{served} < {metrics:?}"
    );
    cluster.shutdown().await;
}

#[tokio::test]
async fn the_web_ui_listens_beyond_loopback_only_with_a_token() {
    let error = start_coordinator(CoordinatorConfig {
        http_bind: Some("0.0.0.0:0".parse().unwrap()),
        ..Default::default()
    })
    .await
    .err()
    .expect("refused without a token")
    .to_string();
    assert!(error.contains("refusing to listen on 0.0.0.0:0"), "{error}");
}
