//! Cluster state in a real etcd: workers join under leases, a dead worker drops out when its
//! lease lapses, tables and job history survive a coordinator restart, and a standby
//! coordinator takes over from a leader that was killed. Each test has its own etcd and its
//! own cluster name.

use std::path::Path;
use std::time::{Duration, Instant};

use prost::Message;
use tally_client::tpch::TPCH_TABLES;
use tally_client::{Client, LocalCluster, LocalClusterOptions};
use tally_common::ids::JobId;
use tally_coordinator::{CoordinatorConfig, start_coordinator};
use tally_meta::{EtcdStore, MetaConfig, MetaStore, WorkerEvent};
use tally_proto::coordinator::{JobState, JobStatus};
use tally_tests::etcd::{Etcd, unique_cluster};
use tally_tests::harness::{alive_workers, tpch_dir};
use tally_tests::process::{Process, free_port, start_workers};

fn meta(etcd: &Etcd, cluster: &str) -> MetaConfig {
    MetaConfig {
        etcd: vec![etcd.endpoint.clone()],
        cluster: cluster.to_string(),
    }
}

async fn etcd_cluster(meta: &MetaConfig, workers: usize) -> LocalCluster {
    LocalCluster::start_with(LocalClusterOptions {
        workers,
        coordinator: CoordinatorConfig {
            meta: meta.clone(),
            ..Default::default()
        },
        ..Default::default()
    })
    .await
    .expect("start a cluster on etcd")
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

fn table_path(table: &str) -> String {
    tpch_dir().join(table).to_string_lossy().to_string()
}

async fn count_nations(client: &Client) -> u64 {
    let result = client
        .sql("SELECT count(*) AS n FROM nation")
        .await
        .expect("count nations");
    let column = result.batches[0]
        .column(0)
        .as_any()
        .downcast_ref::<arrow::array::Int64Array>()
        .expect("count is Int64")
        .value(0);
    column as u64
}

/// Waits for `condition`, polling, up to `limit`; returns how long it took.
async fn within<F, Fut>(limit: Duration, what: &str, mut condition: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !condition().await {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn workers_join_through_etcd_and_the_leader_runs_jobs_on_them() {
    let etcd = Etcd::start();
    let meta = meta(&etcd, &unique_cluster("join"));
    let cluster = etcd_cluster(&meta, 2).await;
    cluster
        .register_table("nation", &table_path("nation"))
        .await
        .unwrap();

    let store = EtcdStore::connect(&meta.etcd, &meta.cluster).await.unwrap();
    let mut events = store.watch_workers().await.unwrap();
    let mut listed = Vec::new();
    for _ in 0..2 {
        match tokio::time::timeout(Duration::from_secs(5), events.recv()).await {
            Ok(Some(WorkerEvent::Up(worker))) => listed.push(worker.endpoint),
            other => panic!("expected a live worker in etcd, got {other:?}"),
        }
    }
    listed.sort();
    let mut endpoints = cluster.worker_endpoints();
    endpoints.sort();
    assert_eq!(listed, endpoints);
    assert_eq!(
        store.leader().await.unwrap().as_deref(),
        Some(cluster.endpoint())
    );
    assert_eq!(store.tables().await.unwrap()[0].name, "nation");

    let client = cluster.client().await.unwrap();
    assert_eq!(count_nations(&client).await, 25);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_worker_process_leaves_the_cluster_when_its_lease_lapses() {
    let etcd = Etcd::start();
    let cluster_name = unique_cluster("lease");
    let coordinator = start_coordinator(CoordinatorConfig {
        meta: meta(&etcd, &cluster_name),
        ..Default::default()
    })
    .await
    .unwrap();
    coordinator.until_leading().await;
    let spool = tempfile::tempdir().unwrap();
    let (_, worker) = start_workers(
        1,
        &[
            "--etcd",
            &etcd.endpoint,
            "--cluster",
            &cluster_name,
            "--lease-ttl-secs",
            "2",
        ],
        spool.path(),
    )
    .remove(0);
    let client = Client::connect(&coordinator.endpoint).await.unwrap();
    let alive = || alive_workers(&client);
    within(Duration::from_secs(10), "the worker joins", || async {
        alive().await == 1
    })
    .await;

    worker.kill();
    let gone = within(
        Duration::from_secs(10),
        "the dead worker drops out",
        || async { alive().await == 0 },
    )
    .await;
    // The lease is 2 s; etcd expires it within about a second more.
    eprintln!("killed worker dropped out after {gone:?}");
    assert!(gone <= Duration::from_secs(6), "took {gone:?}");
    let listed = client.list_workers().await.unwrap();
    assert_eq!(listed.len(), 1, "the dead worker stays listed, as dead");
    assert!(!listed[0].alive);
    coordinator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_coordinator_keeps_the_catalog_and_the_job_history() {
    let etcd = Etcd::start();
    let meta = meta(&etcd, &unique_cluster("restart"));

    let first = etcd_cluster(&meta, 1).await;
    for table in ["nation", "region"] {
        first
            .register_table(table, &table_path(table))
            .await
            .unwrap();
    }
    let client = first.client().await.unwrap();
    let before = client
        .sql("SELECT r_name, count(*) FROM nation JOIN region ON n_regionkey = r_regionkey GROUP BY r_name")
        .await
        .unwrap();
    first.shutdown().await;

    // A job whose coordinator died while it ran, as its record was left in etcd.
    let store = EtcdStore::connect(&meta.etcd, &meta.cluster).await.unwrap();
    let orphan = JobStatus {
        job_id: "j-orphaned".to_string(),
        sql: "SELECT 1".to_string(),
        state: JobState::Running as i32,
        ..Default::default()
    };
    store
        .put_job(&JobId::from(orphan.job_id.clone()), orphan.encode_to_vec())
        .await
        .unwrap();

    let second = etcd_cluster(&meta, 1).await;
    let client = second.client().await.unwrap();
    let mut tables: Vec<String> = client
        .list_tables()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    tables.sort();
    assert_eq!(tables, ["nation", "region"]);
    assert_eq!(count_nations(&client).await, 25);

    let jobs = client.list_jobs().await.unwrap();
    let earlier = jobs
        .iter()
        .find(|j| j.job_id.as_str() == before.metrics.job_id)
        .expect("the earlier job is still listed");
    assert_eq!(earlier.state, tally_client::JobState::Succeeded);
    assert!(earlier.stages.len() > 1, "its stage figures are kept");
    let orphaned = jobs
        .iter()
        .find(|j| j.job_id.as_str() == "j-orphaned")
        .unwrap();
    assert_eq!(orphaned.state, tally_client::JobState::Failed);
    let failure = orphaned.failure.as_ref().expect("the reason is recorded");
    assert!(
        failure.message.contains("coordinator stopped"),
        "{}",
        failure.message
    );
    // The failure is written back, so the next coordinator sees it too.
    let stored = store.jobs().await.unwrap();
    let stored = stored
        .iter()
        .map(|bytes| JobStatus::decode(bytes.as_slice()).unwrap())
        .find(|j| j.job_id == "j-orphaned")
        .unwrap();
    assert_eq!(stored.state(), JobState::Failed);
    second.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_standby_coordinator_takes_over_when_the_leader_is_killed() {
    let etcd = Etcd::start();
    let cluster_name = unique_cluster("failover");
    let spool = tempfile::tempdir().unwrap();
    let coordinator_args = |port: u16| {
        vec![
            "coordinator".to_string(),
            "--bind".to_string(),
            format!("127.0.0.1:{port}"),
            "--etcd".to_string(),
            etcd.endpoint.clone(),
            "--cluster".to_string(),
            cluster_name.clone(),
            "--data-root".to_string(),
            tpch_dir().to_string_lossy().to_string(),
        ]
    };
    let (leader_port, standby_port) = (free_port(), free_port());
    let leader_args = coordinator_args(leader_port);
    let (mut leader, _) = Process::start("leader", &strs(&leader_args));
    leader.wait_for_line("leading");
    let standby_args = coordinator_args(standby_port);
    let (mut standby, _) = Process::start("standby", &strs(&standby_args));
    standby.wait_for_line("standby");
    let workers = start_workers(
        2,
        &["--etcd", &etcd.endpoint, "--cluster", &cluster_name],
        spool.path(),
    );
    let both = format!("127.0.0.1:{standby_port},127.0.0.1:{leader_port}");

    let client = Client::connect(&both).await.unwrap();
    assert_eq!(client.endpoint(), format!("127.0.0.1:{leader_port}"));
    for table in TPCH_TABLES {
        client
            .register_table(table, &table_path(table))
            .await
            .unwrap();
    }
    within(Duration::from_secs(10), "both workers join", || async {
        alive_workers(&client).await == 2
    })
    .await;
    let q5 =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tpch/q5.sql")).unwrap();
    let expected = client.sql(&q5).await.unwrap();

    let killed = Instant::now();
    leader.kill();
    standby.wait_for_line("leading");
    eprintln!(
        "the standby led {:?} after the leader was killed",
        killed.elapsed()
    );
    let client = Client::connect(&both).await.unwrap();
    assert_eq!(client.endpoint(), format!("127.0.0.1:{standby_port}"));
    within(
        Duration::from_secs(10),
        "the new leader sees the workers",
        || async { alive_workers(&client).await == 2 },
    )
    .await;
    let answer = client.sql(&q5).await.unwrap();
    tally_tests::compare::assert_same_results(&q5, &expected.batches, &answer.batches, true);
    assert!(answer.num_rows() > 0);
    for (_, worker) in workers {
        worker.stop();
    }
    standby.stop();
}
