//! The coordinator's web UI (`--http-bind`) and the Prometheus metrics of the coordinator and
//! the workers, over plain HTTP/1.1: the job's graph arrows carry its stages' shuffle bytes,
//! each task shows its time, spill and output, the workers their heartbeats' memory and spool
//! figures, an EXPLAIN ANALYZE job the naive plan's estimate, the byte counters equal the
//! jobs' figures, and the cluster token guards every page (a browser holds a session id,
//! never the token). The browser-driven tests are in `python/tests/test_ui.py`.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use tally_client::{LocalCluster, LocalClusterOptions};
use tally_common::auth::ClusterToken;
use tally_common::security::ClusterSecurity;
use tally_coordinator::{CoordinatorConfig, start_coordinator};
use tally_tests::harness::tpch_dir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// An HTTP/1.1 response: its status, its headers (names in lowercase) and its body.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One request over a fresh connection, with `headers` and, for a POST, a form `body`.
async fn request(method: &str, url: &str, headers: &[(&str, &str)], body: &str) -> Answer {
    let rest = url.strip_prefix("http://").expect("an http URL");
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let mut stream = TcpStream::connect(host).await.expect("connect");
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if method == "POST" {
        head.push_str(&format!(
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    let request = format!("{head}\r\n{body}");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let response = String::from_utf8(response).expect("a text response");
    let (head, body) = response.split_once("\r\n\r\n").expect("headers end");
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = head
        .lines()
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    Answer {
        status,
        headers,
        body,
    }
}

/// A GET with the token as a Bearer header, or nothing: the status code and the body.
async fn get(url: &str, token: Option<&str>) -> (u16, String) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth
        .as_deref()
        .map(|a| vec![("Authorization", a)])
        .unwrap_or_default();
    let answer = request("GET", url, &headers, "").await;
    (answer.status, answer.body)
}

/// A JSON API answer, which must be there.
async fn api(url: &str, token: &ClusterToken) -> serde_json::Value {
    let (status, body) = get(url, Some(token.expose_secret())).await;
    assert_eq!(status, 200, "{url}: {body}");
    serde_json::from_str(&body).unwrap()
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
    cluster_with_ui_and_memory(token, tally_worker::DEFAULT_MEMORY_LIMIT).await
}

async fn cluster_with_ui_and_memory(token: &ClusterToken, memory_limit: usize) -> LocalCluster {
    let cluster = LocalCluster::start_with(LocalClusterOptions {
        workers: 2,
        coordinator: CoordinatorConfig {
            security: ClusterSecurity::new(Some(token.clone()), None),
            http_bind: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            ..Default::default()
        },
        worker_memory_limit: memory_limit,
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

/// The tasks of a stage in `/api/jobs/JOB_ID`, each checked against its stage: their output
/// adds up to the stage's, their time fits in the stage's, and (when no task ran twice)
/// their spill adds up to the stage's.
fn check_tasks_against_their_stage(stage: &serde_json::Value) {
    let tasks = stage["tasks"].as_array().unwrap();
    assert_eq!(tasks.len() as u64, stage["tasks_total"].as_u64().unwrap());
    let sum = |field: &str| {
        tasks
            .iter()
            .map(|t| t[field].as_u64().unwrap())
            .sum::<u64>()
    };
    assert_eq!(
        sum("output_rows"),
        stage["output_rows"].as_u64().unwrap(),
        "{stage}"
    );
    assert_eq!(
        sum("output_bytes"),
        stage["output_bytes"].as_u64().unwrap(),
        "{stage}"
    );
    if tasks.iter().all(|t| t["attempt"] == 0) {
        assert_eq!(
            sum("spilled_bytes"),
            stage["spilled_bytes"].as_u64().unwrap(),
            "{stage}"
        );
    }
    for task in tasks {
        assert_eq!(task["state"], "SUCCEEDED", "{stage}");
        assert!(task["worker_id"].is_string(), "{task}");
        // The worker timed the attempt within the stage's time as the coordinator saw it.
        assert!(
            task["elapsed_ms"].as_u64().unwrap() <= stage["elapsed_ms"].as_u64().unwrap(),
            "{stage}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn each_task_shows_its_time_spill_and_output_and_they_add_up_to_its_stages() {
    let token = ClusterToken::random();
    // A small pool makes the aggregation spill (as in memory.rs).
    let cluster = cluster_with_ui_and_memory(&token, 2 << 20).await;
    let ui = cluster.http_endpoint().unwrap().to_string();
    let client = cluster.client().await.unwrap();
    let settings: BTreeMap<String, String> = [
        (
            "datafusion.execution.sort_spill_reservation_bytes",
            "262144",
        ),
        ("datafusion.execution.target_partitions", "2"),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .into();
    let result = client
        .sql_with_settings(
            "SELECT l_orderkey, l_partkey, count(*) AS n, sum(l_quantity) AS q, \
             max(l_comment) AS c FROM lineitem GROUP BY l_orderkey, l_partkey",
            &settings,
        )
        .await
        .unwrap();
    let spilled: u64 = result.metrics.stages.iter().map(|s| s.spilled_bytes).sum();
    assert!(spilled > 0, "nothing spilled: {:?}", result.metrics);

    let job = api(&format!("{ui}/api/jobs/{}", result.metrics.job_id), &token).await;
    let stages = job["stages"].as_array().unwrap();
    for stage in stages {
        check_tasks_against_their_stage(stage);
    }
    let tasks = || stages.iter().flat_map(|s| s["tasks"].as_array().unwrap());
    let task_spill: u64 = tasks().map(|t| t["spilled_bytes"].as_u64().unwrap()).sum();
    assert_eq!(task_spill, spilled, "{job}");
    assert!(
        tasks().any(|t| t["elapsed_ms"].as_u64().unwrap() > 0),
        "{job}"
    );

    // The page shows the same figures in each task's row.
    let (status, page) = get(
        &format!("{ui}/jobs/{}", result.metrics.job_id),
        Some(token.expose_secret()),
    )
    .await;
    assert_eq!(status, 200);
    for task in tasks() {
        let row = format!(
            "data-partition=\"{}\" data-elapsed-ms=\"{}\" data-spilled=\"{}\" data-rows=\"{}\" data-bytes=\"{}\"",
            task["partition"],
            task["elapsed_ms"],
            task["spilled_bytes"],
            task["output_rows"],
            task["output_bytes"]
        );
        assert!(page.contains(&row), "{row} missing from the page");
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_workers_page_shows_each_workers_memory_and_spool_from_its_heartbeats() {
    let token = ClusterToken::random();
    let limit = 64 << 20;
    let cluster = cluster_with_ui_and_memory(&token, limit).await;
    let ui = cluster.http_endpoint().unwrap().to_string();
    let client = cluster.client().await.unwrap();
    // An answer stays spooled on the workers for a while after the job.
    client
        .sql("SELECT o_orderkey, o_comment FROM orders")
        .await
        .unwrap();

    // Heartbeats come every half second: wait for one sent after the job.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let workers = loop {
        let workers = api(&format!("{ui}/api/workers"), &token).await;
        let spooled: u64 = workers
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|w| w["spool_bytes"].as_u64())
            .sum();
        if spooled > 0 {
            break workers;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no spool reported: {workers}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let workers = workers.as_array().unwrap();
    assert_eq!(workers.len(), 2);
    let (_, page) = get(&format!("{ui}/workers"), Some(token.expose_secret())).await;
    for worker in workers {
        assert_eq!(worker["memory_limit_bytes"], limit as u64, "{worker}");
        assert!(
            worker["memory_reserved_bytes"].as_u64().unwrap() <= limit as u64,
            "{worker}"
        );
        // The worker's own metrics say the same limit.
        let (_, text) = get(
            &format!("http://{}/metrics", worker["endpoint"].as_str().unwrap()),
            Some(token.expose_secret()),
        )
        .await;
        assert_eq!(
            sample(&text, "tally_worker_memory_limit_bytes"),
            limit as f64
        );
        let cell = format!("data-limit=\"{limit}\"");
        assert!(page.contains(&cell), "{cell} missing from {page}");
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_explain_analyze_job_shows_the_naive_plans_estimate_beside_its_graph() {
    let token = ClusterToken::random();
    let cluster = cluster_with_ui(&token).await;
    let ui = cluster.http_endpoint().unwrap().to_string();
    let client = cluster.client().await.unwrap();
    let query = "SELECT o_orderpriority, count(*) FROM orders JOIN lineitem \
                 ON o_orderkey = l_orderkey GROUP BY o_orderpriority";
    let plain = client.sql(query).await.unwrap();
    let explained = client
        .sql(&format!("EXPLAIN ANALYZE {query}"))
        .await
        .unwrap();

    // EXPLAIN ANALYZE's own summary: "... naive plan would shuffle about N bytes ...".
    let batch = explained.batches.last().unwrap();
    let plans = batch
        .column(batch.schema().index_of("plan").unwrap())
        .as_any()
        .downcast_ref::<arrow::array::StringArray>()
        .unwrap();
    let summary = plans.value(arrow::array::Array::len(plans) - 1);
    let said: u64 = summary
        .split("naive plan would shuffle about ")
        .nth(1)
        .and_then(|rest| rest.trim_start_matches("at least ").split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no estimate in {summary}"));
    assert!(said > 0, "{summary}");

    let job = api(
        &format!("{ui}/api/jobs/{}", explained.metrics.job_id),
        &token,
    )
    .await;
    let naive = &job["naive"];
    assert_eq!(naive["bytes"], said, "{job}");
    assert_eq!(naive["workers"], 2);
    let exchanges = naive["exchanges"].as_array().unwrap();
    assert!(exchanges.len() >= 2, "a join and an aggregation: {naive}");
    let per_exchange: u64 = exchanges.iter().filter_map(|e| e["bytes"].as_u64()).sum();
    assert_eq!(per_exchange, said);
    let (_, page) = get(
        &format!("{ui}/jobs/{}", explained.metrics.job_id),
        Some(token.expose_secret()),
    )
    .await;
    assert!(page.contains("<svg"), "{page}");
    assert!(
        page.contains(&format!("id=\"naive-bytes\" data-bytes=\"{said}\"")),
        "{page}"
    );
    assert_eq!(
        page.matches("class=\"naive-exchange\"").count(),
        exchanges.len()
    );

    // A job that was not explained has no naive figures.
    let job = api(&format!("{ui}/api/jobs/{}", plain.metrics.job_id), &token).await;
    assert!(job["naive"].is_null(), "{job}");
    let (_, page) = get(
        &format!("{ui}/jobs/{}", plain.metrics.job_id),
        Some(token.expose_secret()),
    )
    .await;
    assert!(!page.contains("id=\"naive\""));
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_browser_logs_in_to_a_random_session_not_the_token_and_logging_out_ends_it() {
    let token = ClusterToken::random();
    let cluster = cluster_with_ui(&token).await;
    let ui = cluster.http_endpoint().unwrap().to_string();

    let wrong = request(
        "POST",
        &format!("{ui}/login"),
        &[],
        "token=wrong-token-wrong-token",
    )
    .await;
    assert_eq!(wrong.status, 401);
    assert!(wrong.header("set-cookie").is_none());

    let body = format!("token={}", token.expose_secret());
    let login = request("POST", &format!("{ui}/login"), &[], &body).await;
    assert_eq!(login.status, 303, "{}", login.body);
    let set = login.header("set-cookie").unwrap().to_string();
    let session = set
        .split(';')
        .next()
        .and_then(|pair| pair.strip_prefix("tally_session="))
        .unwrap_or_else(|| panic!("a session cookie: {set}"))
        .to_string();
    assert_eq!(session.len(), 64, "{set}");
    assert!(!set.contains(token.expose_secret()), "{set}");
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );

    let cookie = format!("tally_session={session}");
    let with_session = [("Cookie", cookie.as_str())];
    let jobs = request("GET", &format!("{ui}/api/jobs"), &with_session, "").await;
    assert_eq!(jobs.status, 200, "{}", jobs.body);
    let page = request("GET", &format!("{ui}/"), &with_session, "").await;
    assert!(page.body.contains("id=\"log-out\""), "{}", page.body);

    // The token itself as the cookie opens nothing.
    let forged = format!("tally_session={}", token.expose_secret());
    let refused = request(
        "GET",
        &format!("{ui}/api/jobs"),
        &[("Cookie", forged.as_str())],
        "",
    )
    .await;
    assert_eq!(refused.status, 401);

    let logout = request("POST", &format!("{ui}/logout"), &with_session, "").await;
    assert_eq!(logout.status, 303);
    let cleared = logout.header("set-cookie").unwrap();
    assert!(
        cleared.starts_with("tally_session=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );
    let after = request("GET", &format!("{ui}/api/jobs"), &with_session, "").await;
    assert_eq!(after.status, 401, "the session ended with the log-out");
    let form = request("GET", &format!("{ui}/"), &with_session, "").await;
    assert_eq!(form.status, 401);
    assert!(form.body.contains("name=\"token\""), "{}", form.body);

    // Scripts keep the Bearer header.
    assert_eq!(
        get(&format!("{ui}/api/jobs"), Some(token.expose_secret()))
            .await
            .0,
        200
    );
    cluster.shutdown().await;
}
