//! The coordinator's shared state and its operations: tables, workers, jobs, and turning SQL
//! into a running job.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use arrow::datatypes::Schema;
use datafusion::logical_expr::{DdlStatement, LogicalPlan};
use datafusion::prelude::SessionContext;
use tally_common::ids::JobId;
use tally_common::ipc::schema_to_bytes;
use tally_proto::coordinator::TableInfo;

use crate::catalog::{TableEntry, TableFormat, register_table};
use crate::error::CoordinatorError;
use crate::jobs::JobManager;
use crate::planner::plan_job;
use crate::session::{JobSettings, base_config, job_session};
use crate::workers::WorkerRegistry;

pub(crate) struct CoordinatorState {
    base: SessionContext,
    tables: Mutex<BTreeMap<String, TableEntry>>,
    pub workers: Arc<WorkerRegistry>,
    pub jobs: Arc<JobManager>,
    /// Hash partitions per exchange for each live worker, unless the job sets its own.
    partitions_per_worker: usize,
}

impl CoordinatorState {
    pub(crate) fn new(
        workers: Arc<WorkerRegistry>,
        jobs: Arc<JobManager>,
        partitions_per_worker: usize,
    ) -> Self {
        Self {
            base: SessionContext::new_with_config(base_config()),
            tables: Mutex::default(),
            workers,
            jobs,
            partitions_per_worker,
        }
    }

    pub(crate) async fn register_table(
        &self,
        name: &str,
        path: &str,
        format: Option<TableFormat>,
    ) -> Result<TableInfo, CoordinatorError> {
        let entry = register_table(&self.base, name, path, format).await?;
        tracing::info!(table = %entry.name, path = %entry.path.display(), format = entry.format.as_str(), "table registered");
        self.tables
            .lock()
            .expect("table list poisoned")
            .insert(entry.name.clone(), entry.clone());
        self.table_info(&entry.name).await
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
        })
    }

    /// Plans `sql` and starts it as a job. Errors in the query are returned here, before any
    /// job exists.
    pub(crate) async fn submit(
        &self,
        sql: &str,
        settings: JobSettings,
    ) -> Result<JobId, CoordinatorError> {
        if sql.trim().is_empty() {
            return Err(CoordinatorError::Query("empty SQL".to_string()));
        }
        let workers = self.workers.alive().len();
        let session = job_session(
            &self.base,
            &settings,
            workers.max(1) * self.partitions_per_worker,
        )?;
        let state = session.ctx.state();
        let logical = state
            .create_logical_plan(sql)
            .await
            .map_err(CoordinatorError::from_datafusion)?;
        let id = JobId::new_random();

        match &logical {
            LogicalPlan::Ddl(ddl) => {
                self.run_ddl(ddl, sql).await?;
                self.jobs
                    .insert_finished(id.clone(), sql.to_string(), Arc::new(Schema::empty()));
                return Ok(id);
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
        let partitions = state.config().options().execution.target_partitions;
        let distributed = plan_job(&id, physical, &session.rules, partitions, workers)
            .map_err(CoordinatorError::from_datafusion)?;
        tracing::info!(job_id = %id, stages = distributed.stages.len(), "job submitted");
        self.jobs.start(
            id.clone(),
            sql.to_string(),
            session.worker_settings,
            distributed,
            &session.rules,
        );
        Ok(id)
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
