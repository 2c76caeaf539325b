//! The `tally` command line: every subcommand, its flags, and what it runs.

mod progress;
mod quality;
mod servers;
mod sql;
mod statements;
mod target;

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use tally_common::security::ClusterSecurity;
use tally_common::tls::TlsFiles;

use crate::client::Client;
use crate::error::ClientError;
use crate::output::OutputFormat;

#[derive(Parser, Debug)]
#[command(
    name = "tally",
    version,
    about = "Tally: distributed SQL that minimizes shuffle bytes"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Write the 8 TPC-H tables as Parquet, one folder per table.
    GenTpch(GenTpchArgs),
    /// Run a coordinator and N workers in this process until interrupted.
    Local(LocalArgs),
    /// Run a coordinator.
    Coordinator(CoordinatorArgs),
    /// Run a worker that joins a coordinator.
    Worker(WorkerArgs),
    /// Run SQL and print the answer (an embedded cluster unless --coordinator is given).
    Sql(SqlArgs),
    /// List the coordinator's tables.
    Tables(RemoteArgs),
    /// List the coordinator's workers.
    Workers(RemoteArgs),
    /// List the coordinator's jobs.
    Jobs(RemoteArgs),
    /// Cancel a job.
    Cancel(CancelArgs),
    /// Check a table against its expectations in one job; exit 1 when a check fails.
    Check(CheckArgs),
    /// Profile a table's columns in one job: NULLs, distinct values, min, max, quartiles.
    Profile(ProfileArgs),
}

impl Command {
    /// The exit code of an error that is not a failed check: `check` and `profile` keep 1
    /// for failed checks and say 2 for everything else; other commands say 1.
    pub fn error_exit_code(&self) -> u8 {
        match self {
            Command::Check(_) | Command::Profile(_) => 2,
            _ => 1,
        }
    }
}

#[derive(Args, Debug)]
pub struct GenTpchArgs {
    /// TPC-H scale factor (1 = about 1 GB of raw data).
    #[arg(long, default_value_t = 1.0)]
    pub scale: f64,
    #[arg(long)]
    pub out: PathBuf,
    /// Files per large table, so scans split into that many tasks.
    #[arg(long, default_value_t = 6)]
    pub parts: usize,
    /// Write TABLE as a bucketed table on COLUMNS (comma separated), e.g.
    /// `--bucket-by orders=o_orderkey --bucket-by lineitem=l_orderkey`.
    #[arg(long = "bucket-by", value_name = "TABLE=COLUMNS")]
    pub bucket_by: Vec<String>,
    /// Buckets per bucketed table.
    #[arg(long, default_value_t = 6)]
    pub buckets: usize,
}

#[derive(Args, Debug, Clone)]
pub struct TableArgs {
    /// Register a table: NAME=PATH to a Parquet file or folder, or a CSV file.
    #[arg(long = "table", value_name = "NAME=PATH")]
    pub tables: Vec<String>,
}

/// The cluster token and TLS files (see README: Security).
#[derive(Args, Debug, Clone, Default)]
pub struct SecurityArgs {
    /// A file holding the cluster token that every call must carry (default: the
    /// TALLY_TOKEN environment variable; none: listen on loopback only).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// PEM certificate this process serves TLS with.
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// PEM certificate of the CA (or the self-signed certificate) to trust.
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
}

/// OpenLineage events of the jobs that write tables.
#[derive(Args, Debug, Clone, Default)]
pub struct LineageArgs {
    /// Send OpenLineage run events (START, COMPLETE or FAIL, with inputs, outputs and column
    /// lineage) of every job that writes a table: POSTed to http://HOST:PORT/PATH, or
    /// appended as JSON lines to file:PATH.
    #[arg(long, value_name = "URL")]
    pub openlineage_url: Option<String>,
    /// The namespace of Tally's jobs in those events.
    #[arg(long, default_value = "tally", value_name = "NAME")]
    pub openlineage_namespace: String,
}

impl LineageArgs {
    pub fn apply(
        &self,
        config: &mut tally_coordinator::CoordinatorConfig,
    ) -> Result<(), ClientError> {
        config.openlineage = self
            .openlineage_url
            .as_deref()
            .map(tally_coordinator::LineageTarget::parse)
            .transpose()
            .map_err(ClientError::Local)?;
        config.openlineage_namespace = self.openlineage_namespace.clone();
        Ok(())
    }
}

/// Folders SQL may read and write tables under.
#[derive(Args, Debug, Clone, Default)]
pub struct DataRootArgs {
    /// A folder whose files SQL may read as tables and write tables into (repeatable;
    /// default: the current directory). The table dir and `--table` paths are always allowed.
    #[arg(long = "data-root", value_name = "DIR")]
    pub data_roots: Vec<PathBuf>,
    /// Where CREATE TABLE ... AS SELECT and materialized views write what has no location
    /// (default: `tally-tables` in the first data root).
    #[arg(long)]
    pub table_dir: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct LocalArgs {
    #[arg(long, default_value_t = 3)]
    pub workers: usize,
    /// Coordinator port on 127.0.0.1.
    #[arg(long, default_value_t = 50050)]
    pub port: u16,
    #[command(flatten)]
    pub tables: TableArgs,
    #[command(flatten)]
    pub data_roots: DataRootArgs,
    /// Memory each worker's operators may hold, in MiB (sorts and aggregations spill beyond it).
    #[arg(long, default_value_t = tally_worker::DEFAULT_MEMORY_LIMIT >> 20)]
    pub memory_limit_mb: usize,
    #[command(flatten)]
    pub lineage: LineageArgs,
    #[command(flatten)]
    pub security: SecurityArgs,
    #[command(flatten)]
    pub limits: JobLimitArgs,
    /// Serve the web UI and Prometheus `/metrics` on HOST:PORT (beyond loopback only with a
    /// cluster token, which the UI then asks for).
    #[arg(long, value_name = "HOST:PORT")]
    pub http_bind: Option<SocketAddr>,
}

#[derive(Args, Debug)]
pub struct CoordinatorArgs {
    #[arg(long, default_value = "127.0.0.1:50050")]
    pub bind: SocketAddr,
    /// Host name other processes use to reach this coordinator (default: the bound IP).
    #[arg(long)]
    pub advertise_host: Option<String>,
    #[command(flatten)]
    pub cluster: ClusterStateArgs,
    #[command(flatten)]
    pub tables: TableArgs,
    /// Hash partitions per exchange for each live worker.
    #[arg(long, default_value_t = 2)]
    pub partitions_per_worker: usize,
    #[command(flatten)]
    pub data_roots: DataRootArgs,
    #[command(flatten)]
    pub lineage: LineageArgs,
    #[command(flatten)]
    pub security: SecurityArgs,
    #[command(flatten)]
    pub limits: JobLimitArgs,
    /// Serve the web UI and Prometheus `/metrics` on HOST:PORT (beyond loopback only with a
    /// cluster token, which the UI then asks for).
    #[arg(long, value_name = "HOST:PORT")]
    pub http_bind: Option<SocketAddr>,
}

/// Bounds on every job.
#[derive(Args, Debug, Clone)]
pub struct JobLimitArgs {
    /// Failed attempts of one task (a lost worker or input, I/O errors) before its job fails.
    #[arg(long, default_value_t = tally_coordinator::DEFAULT_TASK_ATTEMPTS)]
    pub task_attempts: u32,
    /// A job still running after this many seconds fails.
    #[arg(long, default_value_t = 6 * 3600)]
    pub job_timeout_secs: u64,
    /// A worker that heartbeats to this coordinator (no etcd) is dead after this many silent
    /// seconds; a worker that stops answering while a job needs it is found out sooner.
    #[arg(long, default_value_t = 15)]
    pub worker_timeout_secs: u64,
    /// How long a finished job's spooled output stays on the workers for its client to fetch
    /// the answer.
    #[arg(long, default_value_t = 600)]
    pub result_ttl_secs: u64,
}

impl JobLimitArgs {
    pub fn apply(&self, config: &mut tally_coordinator::CoordinatorConfig) {
        config.task_attempts = self.task_attempts.max(1);
        config.job_timeout = std::time::Duration::from_secs(self.job_timeout_secs.max(1));
        config.heartbeat_timeout = std::time::Duration::from_secs(self.worker_timeout_secs.max(1));
        config.result_ttl = std::time::Duration::from_secs(self.result_ttl_secs);
    }
}

/// Where cluster state lives: in the coordinator's memory, or in etcd.
#[derive(Args, Debug, Clone)]
pub struct ClusterStateArgs {
    /// etcd endpoints (host:port, comma separated); without it state lives in memory.
    #[arg(long, env = "TALLY_ETCD", value_delimiter = ',')]
    pub etcd: Vec<String>,
    /// Name of the cluster: its keys live under /tally/<cluster>/ in etcd.
    #[arg(long, env = "TALLY_CLUSTER", default_value = "default")]
    pub cluster: String,
}

impl ClusterStateArgs {
    pub fn meta_config(&self) -> tally_meta::MetaConfig {
        tally_meta::MetaConfig {
            etcd: self.etcd.clone(),
            cluster: self.cluster.clone(),
        }
    }
}

#[derive(Args, Debug)]
pub struct WorkerArgs {
    /// The coordinator's host:port (without --etcd; with it, the worker finds the leader).
    #[arg(long, default_value = "127.0.0.1:50050")]
    pub coordinator: String,
    #[command(flatten)]
    pub cluster: ClusterStateArgs,
    /// With --etcd: seconds the worker stays listed after its last keep-alive.
    #[arg(long, default_value_t = 5)]
    pub lease_ttl_secs: u64,
    #[arg(long, default_value = "127.0.0.1:0")]
    pub bind: SocketAddr,
    /// Host name other processes use to reach this worker (default: the bound IP).
    #[arg(long)]
    pub advertise_host: Option<String>,
    /// Where task output is spooled (default: a folder under the system temp dir).
    #[arg(long)]
    pub spool_dir: Option<PathBuf>,
    /// Memory the worker's operators may hold, in MiB (they spill or fail beyond it).
    #[arg(long, default_value_t = tally_worker::DEFAULT_MEMORY_LIMIT >> 20)]
    pub memory_limit_mb: usize,
    #[command(flatten)]
    pub security: SecurityArgs,
}

#[derive(Args, Debug)]
pub struct SqlArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// SQL to run; several statements may be separated by `;`.
    #[arg(short = 'e', long = "execute", conflicts_with = "file")]
    pub execute: Option<String>,
    /// A file of SQL statements.
    #[arg(short = 'f', long = "file")]
    pub file: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
    /// Write the last job's figures (shuffle bytes per stage, ...) as JSON to this file.
    #[arg(long)]
    pub metrics_json: Option<PathBuf>,
    /// A session setting for every job: KEY=VALUE (e.g. datafusion.execution.batch_size=4096).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub settings: Vec<String>,
    /// `naive` switches every shuffle-minimizing rule off (the baseline); same as
    /// `--set tally.planner=naive`.
    #[arg(long, value_parser = ["minimized", "naive"])]
    pub planner: Option<String>,
    /// Print no summary of rows, time and shuffle bytes on stderr.
    #[arg(long)]
    pub quiet: bool,
    #[command(flatten)]
    pub lineage: LineageArgs,
}

/// The cluster of a one-shot command: a running coordinator, or an embedded one.
#[derive(Args, Debug)]
pub struct TargetArgs {
    /// Coordinator host:port; without it an embedded cluster runs this one command.
    #[arg(long)]
    pub coordinator: Option<String>,
    /// Workers of the embedded cluster.
    #[arg(long, default_value_t = 3)]
    pub workers: usize,
    #[command(flatten)]
    pub tables: TableArgs,
    #[command(flatten)]
    pub data_roots: DataRootArgs,
    #[command(flatten)]
    pub security: SecurityArgs,
}

/// How `tally check` and `tally profile` print what they found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    Table,
    Json,
}

#[derive(Args, Debug)]
#[command(after_help = "\
Exit codes: 0 when every check passed, 1 when a check failed, 2 when the checks could not \
run (a malformed expectations file, an unknown table or column, a query error, no cluster).

The expectations file is a JSON list such as:
  [{\"not_null\": [\"id\"]}, {\"unique\": [\"id\", \"day\"]},
   {\"accepted_values\": {\"column\": \"region\", \"values\": [\"eu\", \"us\"]}},
   {\"range\": {\"column\": \"revenue\", \"min\": 0, \"max\": 100000}},
   {\"row_count\": {\"min\": 1}}, {\"freshness\": {\"column\": \"ts\", \"max_age_seconds\": 86400}},
   {\"sql\": {\"name\": \"positive_revenue\", \"predicate\": \"revenue >= 0\"}}]
Each may have a \"name\". See README: Data-quality checks and profiling.")]
pub struct CheckArgs {
    /// The table to check.
    pub table: String,
    /// The expectations (JSON) to check; default: the table folder's _tally_expectations.json.
    #[arg(long, value_name = "FILE")]
    pub expectations: Option<PathBuf>,
    /// Check the table against FILE and keep FILE in the table's folder as
    /// _tally_expectations.json for later checks (a table in a local folder only).
    #[arg(long, value_name = "FILE", conflicts_with = "expectations")]
    pub attach: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
    pub format: ReportFormat,
    /// A session setting for the job: KEY=VALUE (e.g. tally.split_bytes=67108864).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub settings: Vec<String>,
    #[command(flatten)]
    pub target: TargetArgs,
}

#[derive(Args, Debug)]
#[command(after_help = "Exit codes: 0 when the profile was printed, 2 when it could not be made.")]
pub struct ProfileArgs {
    /// The table to profile.
    pub table: String,
    #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
    pub format: ReportFormat,
    /// A session setting for the job: KEY=VALUE (e.g. tally.split_bytes=67108864).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub settings: Vec<String>,
    #[command(flatten)]
    pub target: TargetArgs,
}

#[derive(Args, Debug)]
pub struct RemoteArgs {
    #[arg(long, default_value = "127.0.0.1:50050")]
    pub coordinator: String,
    #[command(flatten)]
    pub security: SecurityArgs,
}

#[derive(Args, Debug)]
pub struct CancelArgs {
    pub job_id: String,
    #[arg(long, default_value = "127.0.0.1:50050")]
    pub coordinator: String,
    #[command(flatten)]
    pub security: SecurityArgs,
}

pub async fn run(cli: Cli) -> Result<(), ClientError> {
    // A coordinator or worker process logs what it does; everything else (embedded clusters
    // included) only the cluster's own trouble: a query's error reaches the user once, as
    // the command's error line.
    let servers = matches!(cli.command, Command::Coordinator(_) | Command::Worker(_));
    init_logging(if servers { "info" } else { "warn" });
    match cli.command {
        Command::GenTpch(args) => servers::gen_tpch(args),
        Command::Local(args) => servers::local(args).await,
        Command::Coordinator(args) => servers::coordinator(args).await,
        Command::Worker(args) => servers::worker(args).await,
        Command::Sql(args) => sql::run_sql(args).await,
        Command::Tables(args) => servers::tables(args).await,
        Command::Workers(args) => servers::workers(args).await,
        Command::Jobs(args) => servers::jobs(args).await,
        Command::Cancel(args) => servers::cancel(args).await,
        Command::Check(args) => quality::check(args).await,
        Command::Profile(args) => quality::profile(args).await,
    }
}

/// Logs to stderr at `default_level` unless `RUST_LOG` says otherwise; colours only on a
/// terminal, so redirected stderr holds plain text. The SQL parser's debug lines echo whole
/// statements, secrets in table options included: they are never on.
fn init_logging(default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level))
        .add_directive("sqlparser=info".parse().expect("a valid directive"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

impl SecurityArgs {
    fn tls_files(&self) -> TlsFiles {
        TlsFiles {
            cert: self.tls_cert.clone(),
            key: self.tls_key.clone(),
            ca: self.tls_ca.clone(),
        }
    }

    /// For a coordinator, a worker or an embedded cluster.
    pub(crate) fn for_server(&self) -> Result<ClusterSecurity, ClientError> {
        ClusterSecurity::for_server(self.token_file.as_deref(), &self.tls_files())
            .map_err(|e| ClientError::Local(e.to_string()))
    }

    /// For a command that only calls a coordinator.
    pub(crate) fn for_client(&self) -> Result<ClusterSecurity, ClientError> {
        ClusterSecurity::for_client(self.token_file.as_deref(), &self.tls_files())
            .map_err(|e| ClientError::Local(e.to_string()))
    }

    pub(crate) async fn connect(&self, endpoint: &str) -> Result<Client, ClientError> {
        Client::connect_with(endpoint, self.for_client()?).await
    }
}

impl DataRootArgs {
    /// The folders given, or the current directory.
    pub(crate) fn roots(&self) -> Vec<PathBuf> {
        if self.data_roots.is_empty() {
            std::env::current_dir().into_iter().collect()
        } else {
            self.data_roots.clone()
        }
    }

    /// `--table-dir`, or `tally-tables` in the first data root.
    pub(crate) fn table_dir(&self) -> PathBuf {
        self.table_dir.clone().unwrap_or_else(|| {
            self.roots()
                .first()
                .cloned()
                .unwrap_or_default()
                .join("tally-tables")
        })
    }
}

/// `KEY=VALUE` settings from `--set`.
pub(crate) fn parse_settings(specs: &[String]) -> Result<BTreeMap<String, String>, ClientError> {
    let mut settings = BTreeMap::new();
    for spec in specs {
        let (key, value) = spec
            .split_once('=')
            .ok_or_else(|| ClientError::Query(format!("--set {spec}: expected KEY=VALUE")))?;
        settings.insert(key.trim().to_string(), value.trim().to_string());
    }
    Ok(settings)
}

/// `NAME=PATH` pairs from `--table`.
pub(crate) fn parse_tables(args: &TableArgs) -> Result<Vec<(String, String)>, ClientError> {
    args.tables
        .iter()
        .map(|spec| {
            spec.split_once('=')
                .map(|(name, path)| (name.trim().to_string(), path.trim().to_string()))
                .filter(|(name, path)| !name.is_empty() && !path.is_empty())
                .ok_or_else(|| ClientError::Query(format!("--table {spec}: expected NAME=PATH")))
        })
        .collect()
}
