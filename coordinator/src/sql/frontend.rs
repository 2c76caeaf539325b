//! The SQL front end: a statement becomes a job. Queries are planned (DataFusion, then Tally's
//! planner) and handed to the scheduler; DDL and EXPLAIN are answered here; a bucketed CTAS
//! and EXPLAIN ANALYZE run as jobs whose finalizer makes the answer; table writes
//! (`INSERT`, `CREATE TABLE`) are built in `table_writes.rs`.

use std::path::PathBuf;
use std::sync::Arc;

use arrow::datatypes::Schema;
use datafusion::logical_expr::{DdlStatement, LogicalPlan};
use datafusion::physical_plan::repartition::RepartitionExec;
use tally_common::bucketing::BucketSinkExec;
use tally_common::ids::JobId;
use tally_common::object_stores::{redact_secrets, s3_bucket};

use super::catalog::{Catalog, TableFormat};
use super::create_table::parse_create_table;
use super::ctas::{BucketedCtas, parse_bucketed_ctas};
use super::explain::{Estimate, estimate_exchanges, explain_batch, to_ipc};
use super::s3_tables::S3Target;
use super::session::{JobSession, JobSettings, job_session};
use super::table_insert::parse_table_insert;
use super::view_jobs::ViewJobs;
use super::views::parse_view_statement;
use crate::error::CoordinatorError;
use crate::jobs::{JobManager, WorkerRegistry, planned_stage};
use crate::lineage::recorder::{LineageRecorder, WrittenTable};
use crate::planner::rewrite;

pub(crate) struct SqlFrontend {
    pub catalog: Arc<Catalog>,
    pub workers: Arc<WorkerRegistry>,
    pub jobs: Arc<JobManager>,
    /// Hash partitions per exchange for each live worker, unless the job sets its own.
    partitions_per_worker: usize,
    /// Where `CREATE TABLE` makes tables without a location.
    pub(super) table_dir: PathBuf,
    views: Arc<ViewJobs>,
    /// OpenLineage events for jobs that write tables, when `--openlineage-url` is set.
    pub(crate) lineage: Option<Arc<LineageRecorder>>,
}

impl SqlFrontend {
    pub(crate) fn new(
        catalog: Arc<Catalog>,
        workers: Arc<WorkerRegistry>,
        jobs: Arc<JobManager>,
        partitions_per_worker: usize,
        table_dir: PathBuf,
        lineage: Option<LineageRecorder>,
    ) -> Self {
        let lineage = lineage.map(Arc::new);
        let views = Arc::new(ViewJobs::new(
            catalog.clone(),
            jobs.clone(),
            table_dir.clone(),
            lineage.clone(),
        ));
        Self {
            catalog,
            workers,
            jobs,
            partitions_per_worker,
            table_dir,
            views,
            lineage,
        }
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
        super::sql_guard::check_expression_depth(sql)?;
        let workers = self.workers.alive().len();
        let mut session = job_session(
            self.catalog.base(),
            &settings,
            workers.max(1) * self.partitions_per_worker,
        )?;
        // Workers read S3 tables with the clients and options the catalog has.
        session
            .worker_settings
            .0
            .extend(self.catalog.bucket_settings());
        if let Some(statement) = parse_view_statement(sql)? {
            return self.views.run(statement, sql, session, workers).await;
        }
        if let Some(insert) = parse_table_insert(sql)? {
            if workers == 0 {
                return Err(CoordinatorError::NoWorkers);
            }
            return self.insert_into_table(sql, insert, session, workers).await;
        }
        if let Some(ctas) = parse_bucketed_ctas(sql)? {
            if workers == 0 {
                return Err(CoordinatorError::NoWorkers);
            }
            return self
                .create_bucketed_table(sql, ctas, session, workers)
                .await;
        }
        if let Some(create) = parse_create_table(sql)? {
            if workers == 0 && create.query.is_some() {
                return Err(CoordinatorError::NoWorkers);
            }
            return self.create_file_table(sql, create, session, workers).await;
        }
        let state = session.ctx.state();
        let logical = super::spark::logical_plan(&state, sql)
            .await
            .map_err(CoordinatorError::from_datafusion)?;
        let id = JobId::new_random();

        match &logical {
            LogicalPlan::Ddl(ddl) => {
                self.run_ddl(ddl, sql).await?;
                self.jobs.insert_finished(
                    id.clone(),
                    redact_secrets(sql),
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
                    "COPY, UPDATE and DELETE are not supported: write tables with INSERT or \
                     CREATE TABLE ... AS SELECT"
                        .to_string(),
                ));
            }
            _ => {}
        }
        if workers == 0 {
            return Err(CoordinatorError::NoWorkers);
        }
        let (logical, views) = self.answer_from_views(&session, logical).await?;
        // From before its files are listed until it ends, the job keeps partition swaps of
        // the tables it reads waiting (table_pins.rs).
        let pinned = self.catalog.pins.pin(&logical).await;
        let physical = state
            .create_physical_plan(&logical)
            .await
            .map_err(CoordinatorError::from_datafusion)?;
        let distributed = session.distribute(&id, physical, workers)?;
        tracing::info!(job_id = %id, stages = distributed.stages.len(), ?views, "job submitted");
        self.jobs.start(
            id.clone(),
            sql.to_string(),
            Arc::new(session.worker_settings.0),
            distributed,
            &session.rules,
            false,
        );
        let jobs = self.jobs.clone();
        let job = id.clone();
        tokio::spawn(async move {
            jobs.finished(&job).await;
            drop(pinned);
        });
        Ok(id)
    }

    /// Runs a bucketed CTAS; the job succeeds once the table is registered.
    async fn create_bucketed_table(
        self: &Arc<Self>,
        sql: &str,
        ctas: BucketedCtas,
        mut session: JobSession,
        workers: usize,
    ) -> Result<JobId, CoordinatorError> {
        if self.catalog.contains(&ctas.name) {
            return Err(CoordinatorError::Query(format!(
                "table {} already exists",
                ctas.name
            )));
        }
        let mut dir = ctas
            .location
            .clone()
            .unwrap_or_else(|| self.table_dir.join(&ctas.name));
        let target = match s3_bucket(&dir.to_string_lossy()) {
            Some(bucket) => {
                let bucket = bucket.map_err(CoordinatorError::from_datafusion)?;
                let options = self.catalog.bucket_options(&bucket);
                let location = dir.to_string_lossy().to_string();
                let target = S3Target::open(&ctas.name, &location, &bucket, options).await?;
                let (key, value) = target.options.to_setting(&bucket);
                session.worker_settings.0.insert(key, value);
                Some(target)
            }
            None => {
                let local = self.catalog.data_roots.check(&dir.to_string_lossy())?;
                let occupied =
                    std::fs::read_dir(&local).is_ok_and(|mut entries| entries.next().is_some());
                if occupied {
                    return Err(CoordinatorError::Query(format!(
                        "cannot create table {} at {}: the folder is not empty",
                        ctas.name,
                        local.display()
                    )));
                }
                dir = local;
                None
            }
        };
        let state = session.ctx.state();
        let (plan, logical) = async {
            let logical = super::spark::logical_plan(&state, &ctas.query).await?;
            let query = state.create_physical_plan(&logical).await?;
            let partitioning = ctas.spec.partitioning(&query.schema())?;
            let bucketed = Arc::new(RepartitionExec::try_new(query, partitioning)?);
            let sink = Arc::new(BucketSinkExec::new(bucketed, dir.clone()));
            Ok::<_, datafusion::error::DataFusionError>((sink, logical))
        }
        .await
        .map_err(CoordinatorError::from_datafusion)?;
        let location = match &target {
            Some(target) => target.location.clone(),
            None => dir.to_string_lossy().to_string(),
        };
        let id = JobId::new_random();
        let distributed = session.distribute(&id, plan, workers)?;
        let name = ctas.name.clone();
        let table = ctas.name.clone();
        let this = self.clone();
        self.jobs.start_finalized(
            id.clone(),
            sql.to_string(),
            Arc::new(session.worker_settings.0),
            distributed,
            &session.rules,
            move || async move {
                match target {
                    Some(target) => {
                        target.commit(&name, &ctas.spec).await?;
                        let options = target.options.to_table_options();
                        this.catalog
                            .register_with(
                                &name,
                                &target.location,
                                Some(TableFormat::Parquet),
                                &options,
                            )
                            .await?;
                    }
                    None => {
                        ctas.spec.write(&dir).map_err(|e| {
                            CoordinatorError::Internal(format!(
                                "writing the bucketing of {name} at {}: {e}",
                                dir.display()
                            ))
                        })?;
                        this.catalog
                            .register(&name, &dir.to_string_lossy(), Some(TableFormat::Parquet))
                            .await?;
                    }
                }
                Ok(None)
            },
        );
        let written = WrittenTable {
            table,
            location,
            schema: logical.schema().as_arrow().clone(),
            action: "create_table",
        };
        self.follow_lineage(&id, sql, &logical, written);
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
        let (answered, views) = self.answer_from_views(&session, inner.clone()).await?;
        let physical = state
            .create_physical_plan(&answered)
            .await
            .map_err(CoordinatorError::from_datafusion)?;
        let from_views = if views.is_empty() {
            String::new()
        } else {
            format!("; answered from materialized view {}", views.join(", "))
        };
        let distributed = session.distribute(&id, physical, workers)?;

        let mut naive_settings = settings.clone();
        naive_settings
            .0
            .insert("tally.planner".to_string(), "naive".to_string());
        // The same partition count as the plan it is compared with.
        let naive_session = job_session(self.catalog.base(), &naive_settings, partitions)?;
        let naive_physical = naive_session
            .ctx
            .state()
            .create_physical_plan(&inner)
            .await
            .map_err(CoordinatorError::from_datafusion)?;
        let naive = rewrite(naive_physical, &naive_session.rules, partitions)
            .map_err(CoordinatorError::from_datafusion)?;
        let naive = estimate_exchanges(&naive, workers);
        let estimate = Estimate::from(&naive);

        if !analyze {
            let summary = format!(
                "{} stages on {workers} workers; naive plan would shuffle about \
                 {estimate}{from_views}",
                distributed.stages.len()
            );
            let planned: Vec<_> = distributed.stages.iter().map(planned_stage).collect();
            let batch = explain_batch(&planned, false, summary)
                .map_err(|e| CoordinatorError::Internal(e.to_string()))?;
            let bytes = to_ipc(&batch).map_err(|e| CoordinatorError::Internal(e.to_string()))?;
            self.jobs
                .insert_finished(id.clone(), sql.to_string(), batch.schema(), bytes);
            return Ok(id);
        }

        let job = id.clone();
        let this = self.clone();
        self.jobs.start_finalized(
            id.clone(),
            sql.to_string(),
            Arc::new(session.worker_settings.0),
            distributed,
            &session.rules,
            move || async move {
                let status = this
                    .jobs
                    .status(&job)
                    .ok_or_else(|| CoordinatorError::Internal(format!("job {job} vanished")))?;
                let shuffled: u64 = status.stages.iter().map(|s| s.shuffle_bytes).sum();
                let rows: u64 = status.stages.iter().map(|s| s.shuffle_rows).sum();
                let summary = format!(
                    "shuffled {shuffled} bytes ({rows} rows) between workers in {} ms; answer \
                 {} rows, {} bytes; naive plan would shuffle about {estimate}{from_views}",
                    status.elapsed.as_millis(),
                    status.result_rows,
                    status.result_bytes
                );
                let batch = explain_batch(&status.stages, true, summary)
                    .map_err(|e| CoordinatorError::Internal(e.to_string()))?;
                let bytes =
                    to_ipc(&batch).map_err(|e| CoordinatorError::Internal(e.to_string()))?;
                Ok(Some((batch.schema(), bytes)))
            },
        );
        self.jobs.compare_with_naive(&id, naive);
        Ok(id)
    }

    /// `plan` with what up-to-date materialized views can answer read from them, unless the
    /// job turned `tally.view_rewrite` off.
    async fn answer_from_views(
        &self,
        session: &JobSession,
        plan: LogicalPlan,
    ) -> Result<(LogicalPlan, Vec<String>), CoordinatorError> {
        if !session.rules.view_rewrite {
            return Ok((plan, Vec::new()));
        }
        self.views
            .answer_from_views(&session.ctx.state(), plan)
            .await
    }

    async fn run_ddl(&self, ddl: &DdlStatement, sql: &str) -> Result<(), CoordinatorError> {
        match ddl {
            DdlStatement::CreateExternalTable(create)
                if create.file_type.eq_ignore_ascii_case("kafka") =>
            {
                self.catalog.register_kafka(create, sql).await?;
                Ok(())
            }
            DdlStatement::CreateExternalTable(create) => {
                let [location] = create.locations.as_slice() else {
                    return Err(CoordinatorError::Query(
                        "CREATE EXTERNAL TABLE takes one LOCATION (a file or a folder)".to_string(),
                    ));
                };
                let format = TableFormat::parse(&create.file_type)?;
                self.catalog
                    .register_with(create.name.table(), location, Some(format), &create.options)
                    .await?;
                Ok(())
            }
            DdlStatement::DropTable(drop) => {
                self.catalog
                    .drop_table(drop.name.table(), drop.if_exists)
                    .await
            }
            _ => {
                // Views and the like live in the coordinator's catalog only.
                self.catalog
                    .base()
                    .sql(sql)
                    .await
                    .map_err(CoordinatorError::from_datafusion)?;
                Ok(())
            }
        }
    }
}
