//! A lost worker costs its tasks, not the job: tasks it ran (and output it held that is still
//! needed) run again elsewhere and the answer stays exact. Query errors fail at once without
//! retries; a job with no workers left, or past its timeout, fails with the reason; a
//! cancelled job frees its spool.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tally_client::tpch::TPCH_TABLES;
use tally_client::{
    Client, JobId, JobState, JobStatus, LocalCluster, LocalClusterOptions, StageState, StageStatus,
    TaskState,
};
use tally_common::ids::WorkerId;
use tally_coordinator::CoordinatorConfig;
use tally_tests::compare::assert_same_results;
use tally_tests::harness::{alive_workers, datafusion_answer, tpch_cluster_with, tpch_dir};

/// Small batches slow every stage down, so a test can act between two stages. Eager
/// aggregation is off: it would shrink the test joins to nothing.
const SLOW: [(&str, &str); 2] = [
    ("datafusion.execution.batch_size", "256"),
    ("tally.eager_aggregation", "false"),
];
/// Tiny batches: a job that runs for many seconds.
const SLOWER: [(&str, &str); 2] = [
    ("datafusion.execution.batch_size", "16"),
    ("tally.eager_aggregation", "false"),
];

async fn cluster(workers: usize, config: CoordinatorConfig) -> LocalCluster {
    tpch_cluster_with(LocalClusterOptions {
        workers,
        coordinator: config,
        ..Default::default()
    })
    .await
}

/// Workers that stop heartbeating are dropped after 3 s (15 s by default).
fn quick_expiry() -> CoordinatorConfig {
    CoordinatorConfig {
        heartbeat_timeout: Duration::from_secs(3),
        ..Default::default()
    }
}

fn settings(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Polls the job until `condition` holds for its status (or the job ends).
async fn until(
    client: &Client,
    job_id: &JobId,
    condition: impl Fn(&JobStatus) -> bool,
) -> JobStatus {
    loop {
        let status = client.job(job_id).await.unwrap();
        if condition(&status) || status.state != JobState::Running {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// The scan stage: the one that reads no other stage.
fn map_stage(status: &JobStatus) -> &StageStatus {
    status
        .stages
        .iter()
        .find(|s| s.input_stages.is_empty())
        .expect("a scan stage")
}

/// A scan stage, then a join that takes a while (about 9 million joined rows): long enough
/// to lose a worker while the join still needs the scan's output.
/// A worker running a task of a stage that reads the map stage.
fn running_reader(status: &JobStatus) -> Option<WorkerId> {
    let map = map_stage(status).stage_id;
    status
        .stages
        .iter()
        .filter(|s| s.input_stages.contains(&map))
        .flat_map(|s| &s.tasks)
        .find(|t| t.state == TaskState::Running)
        .and_then(|t| t.worker_id.clone())
}

const REPORT: &str = "SELECT a.l_suppkey, count(*) AS pairs, sum(b.l_quantity) AS quantity \
                      FROM lineitem a JOIN lineitem b ON a.l_suppkey = b.l_suppkey \
                      WHERE b.l_linenumber = 1 GROUP BY a.l_suppkey ORDER BY a.l_suppkey";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_killed_after_the_map_stage_costs_only_its_own_tasks() {
    let mut cluster = cluster(3, quick_expiry()).await;
    let client = cluster.client().await.unwrap();
    let job_id = client.submit(REPORT, &settings(&SLOW)).await.unwrap();

    // Kill a worker while a task of the stage reading the map output runs on it: that task
    // dies unreported, and the map output the worker held is still needed.
    let before = until(&client, &job_id, |status| {
        map_stage(status).state == StageState::Succeeded && running_reader(status).is_some()
    })
    .await;
    assert_eq!(
        before.state,
        JobState::Running,
        "the job ended before the kill"
    );
    let map = map_stage(&before).clone();
    let victim = running_reader(&before).unwrap();
    assert!(cluster.kill_worker(victim.as_str()));

    let status = client
        .wait(&job_id)
        .await
        .expect("the job survives the lost worker");
    let answer = client.fetch_results(&status).await.unwrap();
    assert_same_results(
        REPORT,
        &datafusion_answer(REPORT).await,
        &answer.batches,
        true,
    );

    // In the map stage, exactly the tasks that had run on the lost worker ran again.
    assert!(
        map.tasks
            .iter()
            .any(|t| t.worker_id.as_ref() == Some(&victim))
    );
    let after = map_stage(&status);
    for (task, first) in after.tasks.iter().zip(&map.tasks) {
        let rerun = task.attempt > 0;
        assert_eq!(
            rerun,
            first.worker_id.as_ref() == Some(&victim),
            "map task {} first ran on {}, now attempt {} on {}",
            task.partition,
            first.worker_id.as_ref().unwrap(),
            task.attempt,
            task.worker_id.as_ref().unwrap()
        );
        assert_ne!(task.worker_id.as_ref(), Some(&victim));
        assert_eq!(task.state, TaskState::Succeeded);
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn errors_in_the_query_fail_the_job_at_once_without_retries() {
    let cluster = cluster(2, CoordinatorConfig::default()).await;
    let client = cluster.client().await.unwrap();
    let sql = "SELECT l_quantity / (l_linenumber - l_linenumber) FROM lineitem";
    let job_id = client.submit(sql, &BTreeMap::new()).await.unwrap();
    let error = client.wait(&job_id).await.unwrap_err().to_string();
    assert!(error.to_lowercase().contains("divide by zero"), "{error}");
    let status = client.job(&job_id).await.unwrap();
    let attempts: Vec<u32> = status
        .stages
        .iter()
        .flat_map(|s| &s.tasks)
        .map(|t| t.attempt)
        .collect();
    assert!(attempts.iter().all(|&a| a == 0), "retried: {attempts:?}");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_whose_workers_all_died_fails_within_the_heartbeat_timeout() {
    let mut cluster = cluster(2, quick_expiry()).await;
    let client = cluster.client().await.unwrap();
    let slow = "SELECT count(*) FROM lineitem a JOIN lineitem b ON a.l_suppkey = b.l_suppkey";
    let job_id = client.submit(slow, &settings(&SLOWER)).await.unwrap();
    until(&client, &job_id, |status| {
        status.stages.iter().any(|s| s.tasks_running > 0)
    })
    .await;
    let endpoints = client.list_workers().await.unwrap();
    let killed = Instant::now();
    for worker in &endpoints {
        assert!(cluster.kill_worker(worker.worker_id.as_str()));
    }
    let error = client.wait(&job_id).await.unwrap_err().to_string();
    let took = killed.elapsed();
    assert!(error.contains("no live workers"), "{error}");
    // 3 s of heartbeat timeout, plus a margin for a loaded machine.
    assert!(took < Duration::from_secs(10), "took {took:?}");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_past_its_timeout_fails_and_says_so() {
    let cluster = cluster(
        2,
        CoordinatorConfig {
            job_timeout: Duration::from_millis(100),
            ..Default::default()
        },
    )
    .await;
    let client = cluster.client().await.unwrap();
    let slow = "SELECT count(*) FROM lineitem a JOIN lineitem b ON a.l_suppkey = b.l_suppkey";
    let job_id = client.submit(slow, &settings(&SLOWER)).await.unwrap();
    let error = client.wait(&job_id).await.unwrap_err().to_string();
    assert!(error.contains("timed out after"), "{error}");
    // The cluster is free for the next job.
    let quick = client.sql("SELECT count(*) FROM nation").await.unwrap();
    assert_eq!(quick.num_rows(), 1);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancelled_job_stops_and_frees_its_spool() {
    let cluster = cluster(2, CoordinatorConfig::default()).await;
    let client = cluster.client().await.unwrap();
    let slow = "SELECT count(*) FROM lineitem a JOIN lineitem b ON a.l_suppkey = b.l_suppkey";
    let job_id = client.submit(slow, &settings(&SLOWER)).await.unwrap();
    until(&client, &job_id, |status| {
        status.stages.iter().any(|s| s.tasks_succeeded > 0)
    })
    .await;
    assert_eq!(client.cancel(&job_id).await.unwrap(), JobState::Cancelled);
    let spools: Vec<_> = cluster
        .worker_spool_dirs()
        .into_iter()
        .map(|dir| dir.join(job_id.as_str()))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(5);
    while spools.iter().any(|dir| dir.exists()) {
        assert!(
            Instant::now() < deadline,
            "spool of the cancelled job is still there"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let quick = client.sql("SELECT count(*) FROM nation").await.unwrap();
    assert_eq!(quick.num_rows(), 1);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_process_killed_during_q18_costs_tasks_not_the_answer() {
    use tally_tests::harness::tally_binary;
    use tally_tests::process::{Process, free_port, start_workers};

    let spool = tempfile::tempdir().unwrap();
    let coordinator = format!("127.0.0.1:{}", free_port());
    let (coordinator_process, _) = Process::start(
        "coordinator",
        &[
            "coordinator",
            "--bind",
            &coordinator,
            "--worker-timeout-secs",
            "3",
            "--data-root",
            tpch_dir().to_str().unwrap(),
        ],
    );
    let mut workers = start_workers(3, &["--coordinator", &coordinator], spool.path());
    assert!(tally_binary().exists());
    let client = Client::connect(&coordinator).await.unwrap();
    for table in TPCH_TABLES {
        let path = tpch_dir().join(table);
        client
            .register_table(table, path.to_str().unwrap())
            .await
            .unwrap();
    }
    let mut alive = 0;
    for _ in 0..100 {
        alive = alive_workers(&client).await;
        if alive == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(alive, 3);

    let q18 = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tpch/q18.sql"),
    )
    .unwrap();
    let job_id = client.submit(&q18, &settings(&SLOWER)).await.unwrap();
    // Any finished stage whose reader runs on a worker: that worker dies mid-job.
    let victim_of = |status: &JobStatus| {
        status
            .stages
            .iter()
            .filter(|s| s.state == StageState::Succeeded)
            .flat_map(|done| {
                status
                    .stages
                    .iter()
                    .filter(move |s| s.input_stages.contains(&done.stage_id))
            })
            .flat_map(|s| &s.tasks)
            .find(|t| t.state == TaskState::Running)
            .and_then(|t| t.worker_id.clone())
    };
    let before = until(&client, &job_id, |status| victim_of(status).is_some()).await;
    assert_eq!(
        before.state,
        JobState::Running,
        "the job ended before the kill"
    );
    let victim = victim_of(&before).unwrap();
    let index = workers
        .iter()
        .position(|(id, _)| id == victim.as_str())
        .unwrap();
    workers.remove(index).1.kill();

    let status = client
        .wait(&job_id)
        .await
        .expect("Q18 survives the killed worker");
    let answer = client.fetch_results(&status).await.unwrap();
    assert_same_results(&q18, &datafusion_answer(&q18).await, &answer.batches, true);
    let reruns = status
        .stages
        .iter()
        .flat_map(|s| &s.tasks)
        .filter(|t| t.attempt > 0)
        .count();
    assert!(reruns > 0, "no task ran again");
    assert!(
        status
            .stages
            .iter()
            .flat_map(|s| &s.tasks)
            .all(|t| t.worker_id.as_ref() != Some(&victim))
    );
    for (_, worker) in workers {
        worker.stop();
    }
    coordinator_process.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ctrl_c_in_tally_sql_cancels_the_job_on_the_cluster() {
    use std::process::{Command, Stdio};
    use tally_tests::harness::tally_binary;

    let cluster = cluster(2, CoordinatorConfig::default()).await;
    let client = cluster.client().await.unwrap();
    let slow = "SELECT count(*) FROM lineitem a JOIN lineitem b ON a.l_suppkey = b.l_suppkey";
    let sql = Command::new(tally_binary())
        .args(["sql", "--coordinator", cluster.endpoint(), "-e", slow])
        .args(
            SLOWER
                .iter()
                .flat_map(|(k, v)| ["--set".to_string(), format!("{k}={v}")]),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let running = loop {
        let jobs = client.list_jobs().await.unwrap();
        if let Some(job) = jobs.iter().find(|j| j.sql == slow) {
            break job.job_id.clone();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let interrupted = Command::new("kill")
        .args(["-INT", &sql.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());
    let output = sql.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("cancelled"), "{stderr}");
    let status = client.job(&running).await.unwrap();
    assert_eq!(status.state, JobState::Cancelled);
    cluster.shutdown().await;
}
