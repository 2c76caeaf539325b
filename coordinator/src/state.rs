//! The coordinator's shared state and its operations: tables, workers, jobs, and turning SQL
//! into a running job.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use arrow::datatypes::{Schema, SchemaRef};
use datafusion::logical_expr::{DdlStatement, LogicalPlan};
use datafusion::prelude::SessionContext;
use tally_common::ids::JobId;
use tally_common::ipc::schema_to_bytes;
use tally_meta::{SharedMetaStore, TableRecord};
use tally_proto::coordinator::TableInfo;

use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::repartition::RepartitionExec;
use tally_common::bucketing::BucketSinkExec;

use crate::catalog::{TableEntry, TableFormat, register_table};
use crate::ctas::{BucketedCtas, parse_bucketed_ctas};
use crate::data_roots::DataRoots;
use crate::error::CoordinatorError;
use crate::explain::{estimate_shuffle_bytes, explain_batch, planned_stages, to_ipc};
use crate::jobs::JobManager;
use crate::planner::{DistributedPlan, plan_job, rewrite};
use crate::session::{JobSession, JobSettings, base_config, job_session};
use crate::status::job_status;
use crate::workers::WorkerRegistry;

pub(crate) struct CoordinatorState {
    base: SessionContext,
    tables: Mutex<BTreeMap<String, TableEntry>>,
    pub workers: Arc<WorkerRegistry>,
    pub jobs: Arc<JobManager>,
    /// Where the catalog, the job history and worker liveness are kept.
    pub store: SharedMetaStore,
    /// Hash partitions per exchange for each live worker, unless the job sets its own.
    partitions_per_worker: usize,
    /// Where `CREATE TABLE ... AS SELECT` writes tables without a location.
    table_dir: PathBuf,
    /// Where tables may be read from and written to.
    pub data_roots: DataRoots,
}

impl CoordinatorState {
    pub(crate) fn new(
        workers: Arc<WorkerRegistry>,
        jobs: Arc<JobManager>,
        store: SharedMetaStore,
        partitions_per_worker: usize,
        table_dir: PathBuf,
        data_roots: DataRoots,
    ) -> Self {
        Self {
            base: SessionContext::new_with_config(base_config()),
            tables: Mutex::default(),
            workers,
            jobs,
            store,
            partitions_per_worker,
            table_dir,
            data_roots,
        }
    }

    /// Registers a table and records it in the cluster state.
    pub(crate) async fn register_table(
        &self,
        name: &str,
        path: &str,
        format: Option<TableFormat>,
    ) -> Result<TableInfo, CoordinatorError> {
        let entry = self.load_table(name, path, format).await?;
        self.store
            .put_table(&TableRecord {
                name: entry.name.clone(),
                path: entry.path.to_string_lossy().to_string(),
                format: entry.format.as_str().to_string(),
            })
            .await?;
        self.table_info(&entry.name).await
    }

    async fn load_table(
        &self,
        name: &str,
        path: &str,
        format: Option<TableFormat>,
    ) -> Result<TableEntry, CoordinatorError> {
        let path = self.data_roots.check(path)?;
        let entry = register_table(&self.base, name, &path.to_string_lossy(), format).await?;
        tracing::info!(table = %entry.name, path = %entry.path.display(), format = entry.format.as_str(), "table registered");
        self.tables
            .lock()
            .expect("table list poisoned")
            .insert(entry.name.clone(), entry.clone());
        Ok(entry)
    }

    /// Loads what the cluster state holds: tables, and the history of jobs run under earlier
    /// leaders. Recorded tables were admitted when they were registered, so their folders are
    /// allowed again; a table whose files are gone stays recorded but unregistered.
    pub(crate) async fn restore(&self) -> Result<(), CoordinatorError> {
        for table in self.store.tables().await? {
            let format = TableFormat::parse(&table.format)?;
            self.data_roots.allow(&table.path);
            if let Err(error) = self
                .load_table(&table.name, &table.path, Some(format))
                .await
            {
                tracing::error!(table = %table.name, %error, "cannot load a recorded table");
            }
        }
        let jobs = self.store.jobs().await?;
        self.jobs.restore(jobs).await;
        Ok(())
    }

    pub(crate) async fn list_tables(&self) -> Result<Vec<TableInfo>, CoordinatorError> {
        let names: Vec<String> = self
            .tables
            .lock()
            .expect("table list poisoned")
            .keys()
            .cloned()
            .collect();
        let mut tables = Vec::new();
        for name in names {
            tables.push(self.table_info(&name).await?);
        }
        Ok(tables)
    }

    async fn table_info(&self, name: &str) -> Result<TableInfo, CoordinatorError> {
        let entry = self
            .tables
            .lock()
            .expect("table list poisoned")
            .get(name)
            .cloned()
            .ok_or_else(|| CoordinatorError::NotFound(format!("no table named {name}")))?;
        let table = self
            .base
            .table_provider(name)
            .await
            .map_err(CoordinatorError::from_datafusion)?;
        Ok(TableInfo {
            name: entry.name,
            path: entry.path.to_string_lossy().to_string(),
            format: entry.format.as_str().to_string(),
            schema: schema_to_bytes(&table.schema())
                .map_err(|e| CoordinatorError::Internal(e.to_string()))?,
            bucketing: entry.bucketing.map(|b| b.to_string()).unwrap_or_default(),
        })
    }

    /// Plans `sql` and starts it as a job. Errors in the query are returned here, before any
    /// job exists.
    pub(crate) async fn submit(
        self: &Arc<Self>,
        sql: &str,
        settings: JobSettings,
    ) -> Result<JobId, CoordinatorError> {
        if sql.trim().is_empty() {
            return Err(CoordinatorError::Query("empty SQL".to_string()));
        }
        crate::sql_guard::check_expression_depth(sql)?;
        let workers = self.workers.alive().len();
        let session = job_session(
            &self.base,
            &settings,
            workers.max(1) * self.partitions_per_worker,
        )?;
        if let Some(ctas) = parse_bucketed_ctas(sql)? {
            if workers == 0 {
                return Err(CoordinatorError::NoWorkers);
            }
            return self
                .create_bucketed_table(sql, ctas, session, workers)
                .await;
        }
        let state = session.ctx.state();
        let logical = state
            .create_logical_plan(sql)
            .await
            .map_err(CoordinatorError::from_datafusion)?;
        let id = JobId::new_random();

        match &logical {
            LogicalPlan::Ddl(ddl) => {
                self.run_ddl(ddl, sql).await?;
                self.jobs.insert_finished(
                    id.clone(),
                    sql.to_string(),
                    Arc::new(Schema::empty()),
                    vec![],
                );
                return Ok(id);
            }
            LogicalPlan::Explain(explain) => {
                let inner = explain.plan.as_ref().clone();
                return self
                    .explain(sql, inner, &settings, session, workers, false)
                    .await;
            }
            LogicalPlan::Analyze(analyze) => {
                let inner = analyze.input.as_ref().clone();
                return self
                    .explain(sql, inner, &settings, session, workers, true)
                    .await;
            }
            LogicalPlan::Statement(_) => {
                return Err(CoordinatorError::Query(
                    "session statements (SET, transactions) are not jobs: pass settings with \
                     the job (`tally sql --set key=value`)"
                        .to_string(),
                ));
            }
            LogicalPlan::Dml(_) | LogicalPlan::Copy(_) => {
                return Err(CoordinatorError::Query(
                    "INSERT, COPY and other writes are not supported yet".to_string(),
                ));
            }
            _ => {}
        }
        if workers == 0 {
            return Err(CoordinatorError::NoWorkers);
        }
        let physical = state
            .create_physical_plan(&logical)
            .await
            .map_err(CoordinatorError::from_datafusion)?;
        let distributed = distribute(&id, &session, physical, workers)?;
        tracing::info!(job_id = %id, stages = distributed.stages.len(), "job submitted");
        self.jobs.start(
            id.clone(),
            sql.to_string(),
            session.worker_settings,
            distributed,
            &session.rules,
            false,
        );
        Ok(id)
    }

    /// Runs a bucketed CTAS; the job succeeds once the table is registered.
    async fn create_bucketed_table(
        self: &Arc<Self>,
        sql: &str,
        ctas: BucketedCtas,
        session: JobSession,
        workers: usize,
    ) -> Result<JobId, CoordinatorError> {
        if self
            .tables
            .lock()
            .expect("table list poisoned")
            .contains_key(&ctas.name)
        {
            return Err(CoordinatorError::Query(format!(
                "table {} already exists",
                ctas.name
            )));
        }
        let dir = ctas
            .location
            .clone()
            .unwrap_or_else(|| self.table_dir.join(&ctas.name));
        let dir = self.data_roots.check(&dir.to_string_lossy())?;
        let occupied = std::fs::read_dir(&dir).is_ok_and(|mut entries| entries.next().is_some());
        if occupied {
            return Err(CoordinatorError::Query(format!(
                "cannot create table {} at {}: the folder is not empty",
                ctas.name,
                dir.display()
            )));
        }
        let state = session.ctx.state();
        let plan = async {
            let logical = state.create_logical_plan(&ctas.query).await?;
            let query = state.create_physical_plan(&logical).await?;
            let partitioning = ctas.spec.partitioning(&query.schema())?;
            let bucketed = Arc::new(RepartitionExec::try_new(query, partitioning)?);
            Ok::<_, datafusion::error::DataFusionError>(Arc::new(BucketSinkExec::new(
                bucketed,
                dir.clone(),
            )))
        }
        .await
        .map_err(CoordinatorError::from_datafusion)?;
        let id = JobId::new_random();
        let distributed = distribute(&id, &session, plan, workers)?;
        let name = ctas.name.clone();
        self.start_finalized(
            id.clone(),
            sql,
            session,
            distributed,
            move |this| async move {
                ctas.spec.write(&dir).map_err(|e| e.to_string())?;
                this.register_table(&name, &dir.to_string_lossy(), Some(TableFormat::Parquet))
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(None)
            },
        );
        Ok(id)
    }

    /// EXPLAIN shows the distributed plan; EXPLAIN ANALYZE runs it and shows what each stage
    /// did. Both compare with what the naive plan would shuffle, estimated from statistics.
    async fn explain(
        self: &Arc<Self>,
        sql: &str,
        inner: LogicalPlan,
        settings: &JobSettings,
        session: JobSession,
        workers: usize,
        analyze: bool,
    ) -> Result<JobId, CoordinatorError> {
        if workers == 0 {
            return Err(CoordinatorError::NoWorkers);
        }
        let id = JobId::new_random();
        let state = session.ctx.state();
        let partitions = state.config().options().execution.target_partitions;
        let physical = state
            .create_physical_plan(&inner)
            .await
            .map_err(CoordinatorError::from_datafusion)?;
        let distributed = distribute(&id, &session, physical, workers)?;

        let mut naive_settings = settings.clone();
        naive_settings
            .0
            .insert("tally.planner".to_string(), "naive".to_string());
        // The same partition count as the plan it is compared with.
        let naive_session = job_session(&self.base, &naive_settings, partitions)?;
        let naive_physical = naive_session
            .ctx
            .state()
            .create_physical_plan(&inner)
            .await
            .map_err(CoordinatorError::from_datafusion)?;
        let naive = rewrite(naive_physical, &naive_session.rules, partitions)
            .map_err(CoordinatorError::from_datafusion)?;
        let estimate = estimate_shuffle_bytes(&naive, workers);

        if !analyze {
            let summary = format!(
                "{} stages on {workers} workers; naive plan would shuffle about {estimate}",
                distributed.stages.len()
            );
            let batch = explain_batch(&planned_stages(&distributed), false, summary)
                .map_err(|e| CoordinatorError::Internal(e.to_string()))?;
            let bytes = to_ipc(&batch).map_err(|e| CoordinatorError::Internal(e.to_string()))?;
            self.jobs
                .insert_finished(id.clone(), sql.to_string(), batch.schema(), bytes);
            return Ok(id);
        }

        let job = id.clone();
        self.start_finalized(
            id.clone(),
            sql,
            session,
            distributed,
            move |this| async move {
                let status = this
                    .jobs
                    .with_job(&job, job_status)
                    .ok_or_else(|| format!("job {job} vanished"))?;
                let shuffled: u64 = status.stages.iter().map(|s| s.shuffle_bytes).sum();
                let rows: u64 = status.stages.iter().map(|s| s.shuffle_rows).sum();
                let summary = format!(
                    "shuffled {shuffled} bytes ({rows} rows) between workers in {} ms; answer \
                 {} rows, {} bytes; naive plan would shuffle about {estimate}",
                    status.elapsed_ms, status.result_rows, status.result_bytes
                );
                let batch =
                    explain_batch(&status.stages, true, summary).map_err(|e| e.to_string())?;
                let bytes = to_ipc(&batch).map_err(|e| e.to_string())?;
                Ok(Some((batch.schema(), bytes)))
            },
        );
        Ok(id)
    }

    /// Starts a job that succeeds only once `finalizer` has run after its stages are done;
    /// the job ends with the finalizer's outcome.
    fn start_finalized<F, Fut>(
        self: &Arc<Self>,
        id: JobId,
        sql: &str,
        session: JobSession,
        plan: DistributedPlan,
        finalizer: F,
    ) where
        F: FnOnce(Arc<Self>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<Option<(SchemaRef, Vec<u8>)>, String>>
            + Send
            + 'static,
    {
        self.jobs.start(
            id.clone(),
            sql.to_string(),
            session.worker_settings,
            plan,
            &session.rules,
            true,
        );
        let Some(mut updates) = self.jobs.subscribe(&id) else {
            return;
        };
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                match this
                    .jobs
                    .with_job(&id, |j| (j.stages_done(), j.is_finished()))
                {
                    Some((_, true)) | None => return,
                    Some((true, false)) => break,
                    Some((false, false)) => {}
                }
                if updates.changed().await.is_err() {
                    return;
                }
            }
            let outcome = finalizer(this.clone()).await;
            this.jobs.finalize(&id, outcome);
        });
    }

    async fn run_ddl(&self, ddl: &DdlStatement, sql: &str) -> Result<(), CoordinatorError> {
        match ddl {
            DdlStatement::CreateExternalTable(create) => {
                let [location] = create.locations.as_slice() else {
                    return Err(CoordinatorError::Query(
                        "CREATE EXTERNAL TABLE takes one LOCATION (a file or a folder)".to_string(),
                    ));
                };
                let format = TableFormat::parse(&create.file_type)?;
                self.register_table(create.name.table(), location, Some(format))
                    .await?;
                Ok(())
            }
            DdlStatement::DropTable(drop) => {
                let name = drop.name.table().to_string();
                let existed = self
                    .tables
                    .lock()
                    .expect("table list poisoned")
                    .remove(&name)
                    .is_some();
                self.base
                    .deregister_table(&name)
                    .map_err(CoordinatorError::from_datafusion)?;
                if !existed && !drop.if_exists {
                    return Err(CoordinatorError::NotFound(format!("no table named {name}")));
                }
                self.store.delete_table(&name).await?;
                Ok(())
            }
            _ => {
                // Views and the like live in the coordinator's catalog only.
                self.base
                    .sql(sql)
                    .await
                    .map_err(CoordinatorError::from_datafusion)?;
                Ok(())
            }
        }
    }
}

/// Cuts `plan` into stages as the job session's rules and partition count say.
fn distribute(
    id: &JobId,
    session: &JobSession,
    plan: Arc<dyn ExecutionPlan>,
    workers: usize,
) -> Result<DistributedPlan, CoordinatorError> {
    let partitions = session
        .ctx
        .state()
        .config()
        .options()
        .execution
        .target_partitions;
    plan_job(id, plan, &session.rules, partitions, workers)
        .map_err(CoordinatorError::from_datafusion)
}
