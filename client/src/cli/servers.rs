//! The long-running subcommands (local cluster, coordinator, worker), data generation, and
//! small listings.

use std::time::Duration;

use tally_coordinator::{CoordinatorConfig, start_coordinator};
use tally_worker::{WorkerConfig, start_worker};

use super::{
    CancelArgs, CoordinatorArgs, GenTpchArgs, LocalArgs, RemoteArgs, WorkerArgs, parse_tables,
};
use crate::error::ClientError;
use crate::local::{LocalCluster, LocalClusterOptions};
use crate::model::JobId;
use crate::output::human_bytes;
use crate::tpch::generate_tpch_bucketed;
use std::collections::BTreeMap;
use tally_common::bucketing::BucketSpec;

pub(crate) fn gen_tpch(args: GenTpchArgs) -> Result<(), ClientError> {
    let mut bucketing = BTreeMap::new();
    for spec in &args.bucket_by {
        let (table, columns) = spec.split_once('=').ok_or_else(|| {
            ClientError::Query(format!("--bucket-by {spec}: expected TABLE=COLUMNS"))
        })?;
        let columns = columns.split(',').map(|c| c.trim().to_string()).collect();
        let bucket_spec = BucketSpec::new(columns, args.buckets)
            .map_err(|e| ClientError::Query(format!("--bucket-by {spec}: {e}")))?;
        bucketing.insert(table.trim().to_string(), bucket_spec);
    }
    let tables = generate_tpch_bucketed(args.scale, &args.out, args.parts, &bucketing)
        .map_err(|e| ClientError::Local(e.to_string()))?;
    for table in tables {
        println!(
            "{:<10} {:>10} rows  {} files  {}",
            table.name,
            table.rows,
            table.files,
            table.path.display()
        );
    }
    Ok(())
}

pub(crate) async fn local(args: LocalArgs) -> Result<(), ClientError> {
    let tables = parse_tables(&args.tables)?;
    let mut options = LocalClusterOptions {
        workers: args.workers,
        port: args.port,
        coordinator: CoordinatorConfig {
            data_roots: args.data_roots.roots(),
            table_dir: args.data_roots.table_dir(),
            security: args.security.for_server()?,
            http_bind: args.http_bind,
            ..Default::default()
        },
        worker_memory_limit: args.memory_limit_mb << 20,
    };
    args.limits.apply(&mut options.coordinator);
    args.lineage.apply(&mut options.coordinator)?;
    let cluster = LocalCluster::start_with(options).await?;
    for (name, path) in &tables {
        cluster.register_table(name, path).await?;
    }
    println!(
        "tally local: coordinator at {} with {} workers ({}). Press Ctrl-C to stop.",
        cluster.endpoint(),
        args.workers,
        cluster.worker_endpoints().join(", ")
    );
    println!(
        "  tally sql --coordinator {} -e 'SELECT ...'",
        cluster.endpoint()
    );
    if let Some(ui) = cluster.http_endpoint() {
        println!("  web UI at {ui}/ (Prometheus metrics at {ui}/metrics)");
    }
    wait_for_interrupt().await?;
    cluster.shutdown().await;
    Ok(())
}

pub(crate) async fn coordinator(args: CoordinatorArgs) -> Result<(), ClientError> {
    let tables = parse_tables(&args.tables)?;
    let mut config = CoordinatorConfig {
        bind: args.bind,
        advertise_host: args.advertise_host,
        meta: args.cluster.meta_config(),
        partitions_per_worker: args.partitions_per_worker.max(1),
        data_roots: args.data_roots.roots(),
        table_dir: args.data_roots.table_dir(),
        security: args.security.for_server()?,
        http_bind: args.http_bind,
        ..Default::default()
    };
    args.limits.apply(&mut config);
    args.lineage.apply(&mut config)?;
    let coordinator = start_coordinator(config)
        .await
        .map_err(|e| ClientError::Local(e.to_string()))?;
    println!("tally coordinator listening on {}", coordinator.endpoint);
    if let Some(ui) = &coordinator.http_endpoint {
        println!("web UI at {ui}/ (Prometheus metrics at {ui}/metrics)");
    }
    let serve = async {
        if !coordinator.is_leading() {
            println!("standby: waiting to lead the cluster");
        }
        coordinator.until_leading().await;
        println!("leading the cluster");
        for (name, path) in &tables {
            coordinator
                .register_table(name, path)
                .await
                .map_err(|e| ClientError::Query(e.to_string()))?;
        }
        wait_for_interrupt().await
    };
    tokio::select! {
        served = serve => served?,
        _ = coordinator.stopped() => {
            return Err(ClientError::Local(
                "the coordinator stopped: it lost its leadership or its cluster state".to_string(),
            ));
        }
    }
    coordinator.shutdown().await;
    Ok(())
}

pub(crate) async fn worker(args: WorkerArgs) -> Result<(), ClientError> {
    let spool_dir = args
        .spool_dir
        .unwrap_or_else(|| std::env::temp_dir().join("tally-spool"));
    let mut config = WorkerConfig::local(args.coordinator, spool_dir);
    config.meta = args.cluster.meta_config();
    config.lease_ttl = Duration::from_secs(args.lease_ttl_secs.max(1));
    config.bind = args.bind;
    config.advertise_host = args.advertise_host;
    config.memory_limit = args.memory_limit_mb << 20;
    config.security = args.security.for_server()?;
    let worker = start_worker(config)
        .await
        .map_err(|e| ClientError::Local(e.to_string()))?;
    println!(
        "tally worker {} listening on {}",
        worker.worker_id, worker.endpoint
    );
    wait_for_interrupt().await?;
    worker.shutdown().await;
    Ok(())
}

async fn wait_for_interrupt() -> Result<(), ClientError> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = signal(SignalKind::terminate())?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result?,
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c().await?;
    // Give in-flight responses a moment before the servers stop.
    tokio::time::sleep(Duration::from_millis(50)).await;
    Ok(())
}

pub(crate) async fn tables(args: RemoteArgs) -> Result<(), ClientError> {
    let client = args.security.connect(&args.coordinator).await?;
    for table in client.list_tables().await? {
        println!("{:<16} {:<8} {}", table.name, table.format, table.path);
        if let Some(view) = &table.view {
            println!("{:<16} {view}", "");
        }
    }
    Ok(())
}

pub(crate) async fn workers(args: RemoteArgs) -> Result<(), ClientError> {
    let client = args.security.connect(&args.coordinator).await?;
    for worker in client.list_workers().await? {
        let load = worker.load.map_or(String::new(), |load| {
            format!(
                ", memory {} of {}, spool {}",
                tally_common::binary_bytes(load.memory_reserved_bytes),
                tally_common::binary_bytes(load.memory_limit_bytes),
                tally_common::binary_bytes(load.spool_bytes)
            )
        });
        println!(
            "{:<12} {:<22} {:<5} last heartbeat {} ms ago{load}",
            worker.worker_id,
            worker.endpoint,
            if worker.alive { "alive" } else { "dead" },
            worker.since_last_heartbeat.as_millis()
        );
    }
    Ok(())
}

pub(crate) async fn jobs(args: RemoteArgs) -> Result<(), ClientError> {
    let client = args.security.connect(&args.coordinator).await?;
    for job in client.list_jobs().await? {
        let metrics = crate::client::JobMetrics::from(&job);
        println!(
            "{:<12} {:<9} {:>7} ms  shuffled {:<24} {}",
            job.job_id,
            metrics.state,
            job.elapsed.as_millis(),
            human_bytes(metrics.shuffle_bytes),
            job.sql.split_whitespace().collect::<Vec<_>>().join(" ")
        );
    }
    Ok(())
}

pub(crate) async fn cancel(args: CancelArgs) -> Result<(), ClientError> {
    let client = args.security.connect(&args.coordinator).await?;
    let state = client.cancel(&JobId::from(args.job_id.clone())).await?;
    println!("job {}: {}", args.job_id, state.as_str());
    Ok(())
}
