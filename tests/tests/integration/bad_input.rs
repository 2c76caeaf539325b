//! The bad-input corpus: SQL that is wrong in every way we know, malformed protobuf sent to
//! every RPC, wrong or missing tokens, oversized messages, paths outside the data roots, all
//! thrown at a cluster of real `tally` processes that requires a token. Each case must get
//! its expected gRPC code and a message that names what is wrong; afterwards every process is
//! still up and the cluster answers a normal query exactly.
//!
//! A case is one line of `cases()`: what to send, the expected code, a part of the message.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use prost::Message;
use tally_client::Client;
use tally_common::auth::{ClusterToken, TOKEN_ENV};
use tally_common::security::{AuthChannel, ClusterSecurity};
use tally_proto::coordinator::coordinator_service_client::CoordinatorServiceClient;
use tally_proto::coordinator::{
    GetJobRequest, JobState, RegisterTableRequest, RegisterWorkerRequest, SubmitJobRequest,
};
use tally_proto::plan::{ShuffleTicket, TaskKey};
use tally_proto::worker::{DropJobRequest, RunTaskRequest};
use tally_tests::compare::assert_same_results;
use tally_tests::harness::{datafusion_answer, tally_binary, tpch_dir};
use tally_tests::process::{Process, free_port};
use tally_tests::raw_grpc::{self, compressed_frame, frame, frame_claiming};
use tonic::Code;

/// What the corpus needs to know about the cluster it runs against.
struct Env {
    /// A data root holding `fake.parquet` (not Parquet at all).
    root: PathBuf,
}

enum Call {
    /// Submitted as a job; its outcome is the submit error or the job's failure.
    Sql(&'static str),
    /// The same, with job settings.
    SqlWith(&'static str, &'static [(&'static str, &'static str)]),
    /// SQL made at run time (long, deep, or naming the data root).
    MadeSql(fn(&Env) -> String),
    /// Bytes sent as-is to a method of a service, with a token header (or none).
    Raw {
        to: Service,
        method: &'static str,
        token: Token,
        body: fn() -> Bytes,
    },
}

#[derive(Clone, Copy)]
enum Service {
    Coordinator,
    /// The worker's port serves its control service and its Flight service.
    Worker,
}

#[derive(Clone, Copy)]
enum Token {
    Right,
    Missing,
    Wrong,
}

struct Case {
    call: Call,
    code: Code,
    /// A part of the message that names what is wrong.
    message: &'static str,
}

const fn sql(sql: &'static str, code: Code, message: &'static str) -> Case {
    Case {
        call: Call::Sql(sql),
        code,
        message,
    }
}

const fn sql_with(
    sql: &'static str,
    settings: &'static [(&'static str, &'static str)],
    code: Code,
    message: &'static str,
) -> Case {
    Case {
        call: Call::SqlWith(sql, settings),
        code,
        message,
    }
}

const fn made(sql: fn(&Env) -> String, code: Code, message: &'static str) -> Case {
    Case {
        call: Call::MadeSql(sql),
        code,
        message,
    }
}

const fn raw(
    to: Service,
    method: &'static str,
    token: Token,
    body: fn() -> Bytes,
    code: Code,
    message: &'static str,
) -> Case {
    Case {
        call: Call::Raw {
            to,
            method,
            token,
            body,
        },
        code,
        message,
    }
}

const COORDINATOR: &str = "/tally.coordinator.CoordinatorService/";
const SUBMIT: &str = "/tally.coordinator.CoordinatorService/SubmitJob";
const RUN_TASK: &str = "/tally.worker.WorkerService/RunTask";
const DROP_JOB: &str = "/tally.worker.WorkerService/DropJob";
const DO_GET: &str = "/arrow.flight.protocol.FlightService/DoGet";

const COORDINATOR_METHODS: [&str; 11] = [
    "SubmitJob",
    "GetJob",
    "WatchJob",
    "CancelJob",
    "ListJobs",
    "RegisterTable",
    "ListTables",
    "RegisterWorker",
    "Heartbeat",
    "ListWorkers",
    "ReportTaskStatus",
];
const WORKER_METHODS: [&str; 4] = [
    "/tally.worker.WorkerService/RunTask",
    "/tally.worker.WorkerService/CancelTask",
    "/tally.worker.WorkerService/DropJob",
    "/arrow.flight.protocol.FlightService/DoGet",
];

fn garbage() -> Bytes {
    // A field tag with wire type 7, which protobuf does not have.
    frame(&[0xff, 0xff, 0xff, 0xff, 0x0f])
}
fn empty() -> Bytes {
    frame(&[])
}
fn claims_300_mib() -> Bytes {
    frame_claiming(300 << 20, b"\x0a\x01x")
}
fn marked_compressed() -> Bytes {
    compressed_frame(&[])
}
fn message(message: impl Message) -> Bytes {
    frame(&message.encode_to_vec())
}
fn task(job: &str) -> Option<TaskKey> {
    Some(TaskKey {
        job_id: job.to_string(),
        stage_id: 1,
        partition: 0,
        attempt: 0,
    })
}

/// Every case, one line each (kept so by `rustfmt::skip`).
#[rustfmt::skip]
fn cases() -> Vec<Case> {
    use Code::*;
    use Service::*;
    use Token::Right;
    let mut cases = vec![
        // SQL syntax.
        sql("SELEC 1", InvalidArgument, "SELEC"),
        sql("SELECT * FROM", InvalidArgument, "Expected"),
        sql("SELECT (1", InvalidArgument, "Expected"),
        sql("SELECT 1 +", InvalidArgument, "Expected"),
        sql("SELECT 'unterminated", InvalidArgument, "Unterminated string"),
        sql("", InvalidArgument, "empty SQL"),
        sql("SELECT 1; SELECT 2", InvalidArgument, "single SQL statement"),
        // Unknown names.
        sql("SELECT * FROM no_such_table", InvalidArgument, "no_such_table"),
        sql("SELECT no_such_column FROM nation", InvalidArgument, "no_such_column"),
        sql("SELECT no_such_fn(1)", InvalidArgument, "no_such_fn"),
        sql("SELECT x.n_name FROM nation", InvalidArgument, "x.n_name"),
        sql("SELECT * FROM no_schema.nation", InvalidArgument, "no_schema.nation"),
        sql("SELECT n_name FROM nation a, nation b", InvalidArgument, "n_name"),
        sql("DROP TABLE no_such_table", NotFound, "no table named no_such_table"),
        // Types.
        sql("SELECT n_name + 1 FROM nation", InvalidArgument, "Utf8"),
        sql("SELECT * FROM nation WHERE n_name", InvalidArgument, "non-boolean predicate"),
        sql("SELECT sum(n_name) FROM nation", InvalidArgument, "sum"),
        sql("SELECT abs(1, 2)", InvalidArgument, "abs"),
        sql("SELECT CAST('abc' AS INT)", InvalidArgument, "abc"),
        sql("SELECT CAST(n_name AS INT) FROM nation", InvalidArgument, "Cannot cast string"),
        sql("SELECT DATE 'not a date'", InvalidArgument, "not a date"),
        sql("SELECT n_name, count(*) FROM nation", InvalidArgument, "GROUP BY"),
        // Division by zero, where the planner folds it and where workers meet it.
        sql("SELECT 1 / 0", InvalidArgument, "Divide by zero"),
        sql("SELECT n_nationkey / 0 FROM nation", InvalidArgument, "Divide by zero"),
        sql("SELECT n_nationkey % 0 FROM nation", InvalidArgument, "Divide by zero"),
        sql("SELECT sum(l_quantity / (l_linenumber - l_linenumber)) FROM lineitem", InvalidArgument, "Divide by zero"),
        // Huge literals.
        sql("SELECT CAST('123456789012345678901234567890123456789012345678901234567890' AS BIGINT)", InvalidArgument, "123456789012345678901234567890123456789012345678901234567890"),
        sql("SELECT CAST(1e50 AS DECIMAL(38, 0))", InvalidArgument, "Decimal128(38, 0)"),
        sql("SELECT CAST(99999999999 AS INT)", InvalidArgument, "99999999999"),
        sql("SELECT CAST(300 AS TINYINT)", InvalidArgument, "300"),
        // Deep nesting.
        made(|_| format!("SELECT {}1{}", "(".repeat(5000), ")".repeat(5000)), InvalidArgument, "RecursionLimitExceeded"),
        made(|_| (0..200).fold("SELECT * FROM nation".to_string(), |sql, _| format!("SELECT * FROM ({sql})")), InvalidArgument, "RecursionLimitExceeded"),
        made(|_| format!("SELECT {} FROM nation", vec!["n_nationkey"; 5000].join(" + ")), InvalidArgument, "more than 1000 operators"),
        made(|_| format!("SELECT * FROM nation WHERE {}", vec!["n_nationkey = 1"; 3000].join(" OR ")), InvalidArgument, "use IN (...)"),
        // Statements that are not jobs, and settings that do not exist.
        sql("UPDATE nation SET n_name = 'x'", InvalidArgument, "UPDATE"),
        sql("INSERT INTO nation (n_name) VALUES ('x')", InvalidArgument, "a column list is not supported"),
        sql("COPY nation TO '/tmp/tally-copy.csv'", InvalidArgument, "COPY"),
        sql("SET datafusion.execution.batch_size = 1", InvalidArgument, "--set key=value"),
        sql_with("SELECT 1", &[("datafusion.no_such", "1")], InvalidArgument, "datafusion.no_such"),
        sql_with("SELECT 1", &[("datafusion.execution.target_partitions", "many")], InvalidArgument, "many"),
        sql_with("SELECT 1", &[("tally.planner", "bogus")], InvalidArgument, "bogus"),
        sql_with("SELECT 1", &[("tally.split_bytes", "0")], InvalidArgument, "tally.split_bytes = 0"),
        // Paths: outside the data roots, missing, not what they claim to be.
        sql("CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '/etc/passwd'", PermissionDenied, "/etc/passwd is outside the data roots"),
        sql("CREATE EXTERNAL TABLE t STORED AS PARQUET LOCATION 'file:///etc/'", PermissionDenied, "not URLs"),
        // S3 locations that are refused before any request leaves the coordinator.
        sql("CREATE EXTERNAL TABLE t STORED AS PARQUET LOCATION 's3:///t/'", InvalidArgument, "s3://BUCKET/PREFIX/"),
        sql("CREATE EXTERNAL TABLE t STORED AS PARQUET LOCATION 's3://bucket/t/' OPTIONS ('aws.secret' 'x')", InvalidArgument, "unknown table option 'aws.secret'"),
        made(|env| format!("CREATE EXTERNAL TABLE t STORED AS PARQUET LOCATION '{}/../../../etc'", env.root.display()), PermissionDenied, "outside the data roots"),
        made(|env| format!("CREATE EXTERNAL TABLE t STORED AS PARQUET LOCATION '{}/missing'", env.root.display()), NotFound, "missing"),
        made(|env| format!("CREATE EXTERNAL TABLE t STORED AS PARQUET LOCATION '{}/fake.parquet'", env.root.display()), InvalidArgument, "fake.parquet"),
        made(|env| format!("CREATE EXTERNAL TABLE t STORED AS AVRO LOCATION '{}/fake.parquet'", env.root.display()), InvalidArgument, "unsupported table format 'avro'"),
        sql("CREATE TABLE t WITH (bucket_by = 'n_nationkey', buckets = 2, location = '/tmp/tally-outside-root') AS SELECT * FROM nation", PermissionDenied, "outside the data roots"),
        sql("CREATE TABLE t WITH (bucket_by = 'n_nationkey') AS SELECT * FROM nation", InvalidArgument, "buckets"),
        // Well-formed requests that name the wrong things.
        raw(Coordinator, "/tally.coordinator.CoordinatorService/GetJob", Right, || message(GetJobRequest { job_id: "nope".into() }), NotFound, "no job nope"),
        raw(Coordinator, "/tally.coordinator.CoordinatorService/WatchJob", Right, || message(GetJobRequest { job_id: "nope".into() }), NotFound, "no job nope"),
        raw(Coordinator, "/tally.coordinator.CoordinatorService/CancelJob", Right, || message(GetJobRequest { job_id: "nope".into() }), NotFound, "no job nope"),
        raw(Coordinator, "/tally.coordinator.CoordinatorService/RegisterTable", Right, || message(RegisterTableRequest { name: "bad name!".into(), path: tpch_dir().join("nation").display().to_string(), format: String::new() }), InvalidArgument, "invalid table name"),
        raw(Coordinator, "/tally.coordinator.CoordinatorService/RegisterTable", Right, || message(RegisterTableRequest { name: "p".into(), path: "/etc/passwd".into(), format: "csv".into() }), PermissionDenied, "outside the data roots"),
        raw(Coordinator, "/tally.coordinator.CoordinatorService/RegisterWorker", Right, || message(RegisterWorkerRequest::default()), InvalidArgument, "worker_id and endpoint are required"),
        raw(Coordinator, "/tally.coordinator.CoordinatorService/RegisterWorker", Right, || message(RegisterWorkerRequest { worker_id: "w-x".into(), endpoint: "not a host^".into(), task_slots: 1 }), InvalidArgument, "bad worker endpoint"),
        raw(Coordinator, "/tally.coordinator.CoordinatorService/NoSuchMethod", Right, empty, Unimplemented, ""),
        raw(Worker, RUN_TASK, Right, || message(RunTaskRequest::default()), InvalidArgument, "missing task"),
        raw(Worker, RUN_TASK, Right, || message(RunTaskRequest { task: task("job1"), plan: b"not a plan".to_vec(), settings: Default::default() }), InvalidArgument, "plan"),
        raw(Worker, RUN_TASK, Right, || message(RunTaskRequest { task: task("../../etc"), plan: Vec::new(), settings: Default::default() }), InvalidArgument, "invalid job ID"),
        raw(Worker, DROP_JOB, Right, || message(DropJobRequest { job_id: "../..".into() }), InvalidArgument, "invalid job ID"),
        raw(Worker, "/tally.worker.WorkerService/CancelTask", Right, empty, InvalidArgument, "missing task"),
        raw(Worker, DO_GET, Right, || message(arrow_flight::Ticket { ticket: b"\xff\xff".to_vec().into() }), InvalidArgument, "not a Tally shuffle ticket"),
        raw(Worker, DO_GET, Right, || message(arrow_flight::Ticket { ticket: ShuffleTicket { job_id: "../../../etc".into(), ..Default::default() }.encode_to_vec().into() }), PermissionDenied, "was not issued by worker"),
        raw(Worker, "/arrow.flight.protocol.FlightService/Handshake", Right, empty, Unimplemented, "handshake"),
        raw(Worker, "/arrow.flight.protocol.FlightService/DoPut", Right, empty, Unimplemented, "do_put"),
        // Framing: a compressed flag nobody negotiated, and lengths past the limit.
        raw(Coordinator, SUBMIT, Right, marked_compressed, Internal, "compressed"),
        raw(Coordinator, SUBMIT, Right, claims_300_mib, OutOfRange, "message length too large"),
        raw(Worker, RUN_TASK, Right, claims_300_mib, OutOfRange, "message length too large"),
        raw(Worker, DO_GET, Right, claims_300_mib, OutOfRange, "message length too large"),
    ];
    // Malformed protobuf to every RPC.
    for method in COORDINATOR_METHODS {
        let path: &'static str = Box::leak(format!("{COORDINATOR}{method}").into_boxed_str());
        cases.push(raw(Coordinator, path, Right, garbage, Internal, "failed to decode"));
    }
    for path in WORKER_METHODS {
        cases.push(raw(Worker, path, Right, garbage, Internal, "failed to decode"));
    }
    // No token and a wrong token, on every service.
    for (to, path) in [(Coordinator, SUBMIT), (Worker, RUN_TASK), (Worker, DO_GET)] {
        cases.push(raw(to, path, Token::Missing, empty, Unauthenticated, "missing cluster token"));
        cases.push(raw(to, path, Token::Wrong, empty, Unauthenticated, "wrong cluster token"));
    }
    cases
}

/// A job's outcome as (code, message): the submit error, or the failed job's error.
async fn run_sql(
    coordinator: &mut CoordinatorServiceClient<AuthChannel>,
    sql: &str,
    settings: &[(&str, &str)],
) -> (Code, String) {
    let request = SubmitJobRequest {
        sql: sql.to_string(),
        settings: settings
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    let job_id = match coordinator.submit_job(request).await {
        Ok(response) => response.into_inner().job_id,
        Err(status) => return (status.code(), status.message().to_string()),
    };
    let mut updates = match coordinator.watch_job(GetJobRequest { job_id }).await {
        Ok(stream) => stream.into_inner(),
        Err(status) => return (status.code(), status.message().to_string()),
    };
    let mut last = None;
    while let Ok(Some(status)) = updates.message().await {
        last = Some(status);
    }
    match last {
        Some(status) if status.state() == JobState::Failed => {
            (Code::from(status.error_code), status.error)
        }
        Some(status) => (Code::Ok, format!("job ended {:?}", status.state())),
        None => (Code::Unknown, "no job status".to_string()),
    }
}

const QUERY: &str = "SELECT l_returnflag, count(*) AS lines, sum(l_quantity) AS quantity \
                     FROM lineitem JOIN orders ON l_orderkey = o_orderkey \
                     GROUP BY l_returnflag ORDER BY l_returnflag";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_corpus_gets_clear_errors_and_the_cluster_stays_up() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("fake.parquet"), "not parquet at all").unwrap();
    let token = ClusterToken::random();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{}\n", token.expose_secret())).unwrap();

    // The coordinator reads the token from a file, the workers from the environment.
    let coordinator_addr = format!("127.0.0.1:{}", free_port());
    let table = |name: &str| format!("{name}={}", tpch_dir().join(name).display());
    let mut processes = vec![
        Process::start_with_env(
            "coordinator",
            &[
                "coordinator",
                "--bind",
                &coordinator_addr,
                "--token-file",
                token_file.to_str().unwrap(),
                "--data-root",
                root.to_str().unwrap(),
                "--table",
                &table("nation"),
                "--table",
                &table("orders"),
                "--table",
                &table("lineitem"),
            ],
            &[],
        )
        .0,
    ];
    let mut worker_addr = String::new();
    for i in 0..2 {
        let spool = dir.path().join(format!("spool{i}"));
        let (worker, line) = Process::start_with_env(
            &format!("worker {i}"),
            &[
                "worker",
                "--coordinator",
                &coordinator_addr,
                "--spool-dir",
                spool.to_str().unwrap(),
            ],
            &[(TOKEN_ENV, token.expose_secret())],
        );
        worker_addr = Process::endpoint_of(&line);
        processes.push(worker);
    }
    let security = ClusterSecurity::new(Some(token.clone()), None);
    let client = Client::connect_with(&coordinator_addr, security.clone())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while client.list_workers().await.unwrap().len() < 2 {
        assert!(Instant::now() < deadline, "workers did not register");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut coordinator = CoordinatorServiceClient::new(
        security
            .lazy_channel(&coordinator_addr, Duration::from_secs(5))
            .unwrap(),
    )
    .max_decoding_message_size(tally_common::MAX_MESSAGE_BYTES)
    .max_encoding_message_size(tally_common::MAX_MESSAGE_BYTES);

    let env = Env { root };
    let right = format!("Bearer {}", token.expose_secret());
    let wrong = format!("Bearer {}", ClusterToken::random().expose_secret());
    let cases = cases();
    assert!(cases.len() >= 50, "only {} cases", cases.len());
    let mut failures = Vec::new();
    for (index, case) in cases.iter().enumerate() {
        let (name, (code, message)) = match &case.call {
            Call::Sql(sql) => (sql.to_string(), run_sql(&mut coordinator, sql, &[]).await),
            Call::SqlWith(sql, settings) => (
                format!("{sql} with {settings:?}"),
                run_sql(&mut coordinator, sql, settings).await,
            ),
            Call::MadeSql(make) => {
                let sql = make(&env);
                let name: String = sql.chars().take(100).collect();
                (name, run_sql(&mut coordinator, &sql, &[]).await)
            }
            Call::Raw {
                to,
                method,
                token,
                body,
            } => {
                let addr = match to {
                    Service::Coordinator => &coordinator_addr,
                    Service::Worker => &worker_addr,
                };
                let authorization = match token {
                    Token::Right => Some(right.as_str()),
                    Token::Missing => None,
                    Token::Wrong => Some(wrong.as_str()),
                };
                let reply = raw_grpc::call(addr, method, authorization, body())
                    .await
                    .unwrap_or_else(|e| panic!("case {index} {method}: {e}"));
                (format!("{method} ({})", index), (reply.code, reply.message))
            }
        };
        let clear = !message.contains('\n') && message.len() < 2000;
        if code != case.code || !message.contains(case.message) || !clear {
            failures.push(format!(
                "case {index} {name}: expected {:?} with {:?}, got {code:?}: {message}",
                case.code, case.message
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases went wrong:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );

    // Every process is up, and the cluster answers exactly.
    for process in &mut processes {
        assert!(process.is_running(), "{} died", process.name);
    }
    let expected = datafusion_answer(QUERY).await;
    let result = client.sql(QUERY).await.unwrap();
    assert_same_results(QUERY, &expected, &result.batches, true);

    // The CLI sends the token from its file; without one it is refused in one line.
    let cli = |token: Option<&str>| {
        let mut command = std::process::Command::new(tally_binary());
        command
            .args(["sql", "--coordinator", &coordinator_addr, "--format", "csv"])
            .args(["-e", QUERY])
            .env_remove(TOKEN_ENV);
        if let Some(file) = token {
            command.args(["--token-file", file]);
        }
        command.output().unwrap()
    };
    let output = cli(Some(token_file.to_str().unwrap()));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).lines().count(),
        expected.iter().map(|b| b.num_rows()).sum::<usize>() + 1
    );
    let output = cli(None);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("refused the call: missing cluster token"),
        "{stderr}"
    );
}
