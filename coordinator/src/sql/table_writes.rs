//! Jobs that write Parquet table folders: `INSERT [OVERWRITE] ... [PARTITION (...)] SELECT`
//! (`table_insert.rs`) and `CREATE TABLE [... PARTITIONED BY (...)] [AS SELECT]`
//! (`create_table.rs`). Workers write the rows, split into Hive partition folders
//! (`HivePartitionSinkExec`), into a staging folder beside the table; the job's finalizer
//! puts them in place once every task has succeeded, and a failed job's staging folder is
//! removed, so the table is never left half written.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::datatypes::{Schema, SchemaRef};
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{DdlStatement, Expr, LogicalPlan, cast, col};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::DataFrame;
use tally_common::hive_sink::HivePartitionSinkExec;
use tally_common::ids::JobId;
use tally_common::object_stores::s3_bucket;

use super::catalog::{TableFormat, check_table_name};
use super::create_table::CreateFileTable;
use super::frontend::SqlFrontend;
use super::hive_partitions::table_partitions;
use super::session::JobSession;
use super::table_insert::{self, OverwriteMode, TableInsert};
use super::table_layout::TableLayout;
use crate::error::CoordinatorError;
use crate::lineage::recorder::WrittenTable;
use crate::options::partition_overwrite_mode;

/// A hidden folder beside `table_dir` for job `id`'s rows (listings skip `.` names).
fn staging_folder(table_dir: &Path, id: &JobId) -> PathBuf {
    let name = table_dir
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().to_string());
    table_dir.with_file_name(format!(".tally-staging-{name}-{id}"))
}

/// `query`'s columns cast to `targets` by position and renamed after them.
fn fit_columns(
    table: &str,
    query: DataFrame,
    targets: &[arrow::datatypes::FieldRef],
    what: &str,
) -> Result<DataFrame, DataFusionError> {
    let sources = query.schema().columns();
    if sources.len() != targets.len() {
        return Err(DataFusionError::Plan(format!(
            "INSERT into {table}: the query gives {} columns, the table takes {} ({what})",
            sources.len(),
            targets.len()
        )));
    }
    let schema = query.schema().clone();
    let columns: Vec<Expr> = sources
        .into_iter()
        .zip(targets)
        .map(|(source, target)| {
            // A column already of the table's type is copied as it is (lineage: IDENTITY).
            let same_type = schema
                .field_with_name(source.relation.as_ref(), &source.name)
                .is_ok_and(|f| f.data_type() == target.data_type());
            let value = if same_type {
                col(source)
            } else {
                cast(col(source), target.data_type().clone())
            };
            value.alias(target.name())
        })
        .collect();
    query.select(columns)
}

impl SqlFrontend {
    /// Removes job `id`'s staging folder once the job has ended (a finalizer that moved the
    /// files in has removed it already).
    fn clean_up_after(self: &Arc<Self>, id: &JobId, staging: PathBuf) {
        let jobs = self.jobs.clone();
        let id = id.clone();
        tokio::spawn(async move {
            jobs.finished(&id).await;
            if staging.exists()
                && let Err(e) = std::fs::remove_dir_all(&staging)
            {
                tracing::warn!(job_id = %id, staging = %staging.display(), "removing a failed write's files: {e}");
            }
        });
    }

    /// Sends the lineage of job `id` writing `output` from `written`, when lineage is on.
    pub(super) fn follow_lineage(
        &self,
        id: &JobId,
        sql: &str,
        written: &LogicalPlan,
        output: WrittenTable,
    ) {
        if let Some(lineage) = &self.lineage {
            lineage.follow_write(&self.jobs, &self.catalog, id, sql, written, output);
        }
    }

    /// `INSERT [OVERWRITE] [TABLE] t [PARTITION (...)] query` into a Parquet table folder.
    pub(super) async fn insert_into_table(
        self: &Arc<Self>,
        sql: &str,
        insert: TableInsert,
        session: JobSession,
        workers: usize,
    ) -> Result<JobId, CoordinatorError> {
        let refuse =
            |why: &str| CoordinatorError::Query(format!("INSERT into {}: {why}", insert.table));
        let entry = self.catalog.entry(&insert.table).ok_or_else(|| {
            CoordinatorError::NotFound(format!("table {} not found", insert.table))
        })?;
        if entry.view.is_some() {
            return Err(refuse("a materialized view is written by REFRESH"));
        }
        if entry.bucketing.is_some() {
            return Err(refuse(
                "a bucketed table takes no inserts (they would break its buckets): make it \
                 again with CREATE TABLE ... WITH (bucket_by = ...) AS SELECT",
            ));
        }
        if entry.format != TableFormat::Parquet || !entry.path.is_dir() {
            return Err(refuse("only Parquet tables in a local folder take inserts"));
        }
        let partitions = table_partitions(&entry.path)?;
        let names: Vec<String> = partitions.iter().map(|(n, _)| n.clone()).collect();
        let target = insert.target(&names)?;
        let mode = OverwriteMode::parse(&partition_overwrite_mode(
            session.ctx.state().config().options(),
        ))?;
        let state = session.ctx.state();
        let table_schema = self
            .catalog
            .base()
            .table_provider(insert.table.as_str())
            .await
            .map_err(CoordinatorError::from_datafusion)?
            .schema();
        let mut targets: Vec<_> = table_schema
            .fields()
            .iter()
            .filter(|f| !names.contains(f.name()))
            .cloned()
            .collect();
        for column in &target.dynamic {
            let field = table_schema
                .field_with_name(column)
                .map_err(|e| CoordinatorError::Internal(e.to_string()))?;
            targets.push(Arc::new(field.clone()));
        }
        let id = JobId::new_random();
        let staging = staging_folder(&entry.path, &id);
        let what = if target.dynamic.is_empty() {
            "its file columns".to_string()
        } else {
            format!("file columns, then {}", target.dynamic.join(", "))
        };
        let (plan, written) = async {
            let logical = super::spark::logical_plan(&state, &insert.query).await?;
            let query = fit_columns(
                &insert.table,
                DataFrame::new(state.clone(), logical),
                &targets,
                &what,
            )?;
            let written = query.logical_plan().clone();
            let physical = query.create_physical_plan().await?;
            let sink =
                HivePartitionSinkExec::try_new(physical, staging.clone(), target.dynamic.clone())?;
            Ok::<_, DataFusionError>((Arc::new(sink) as Arc<dyn ExecutionPlan>, written))
        }
        .await
        .map_err(CoordinatorError::from_datafusion)?;
        let output = WrittenTable {
            table: insert.table.clone(),
            location: entry.path.to_string_lossy().to_string(),
            schema: table_schema.as_ref().clone(),
            action: if insert.overwrite {
                "insert_overwrite"
            } else {
                "insert"
            },
        };
        let distributed = session.distribute(&id, plan, workers)?;
        let this = self.clone();
        let job = id.to_string();
        let staged = staging.clone();
        self.jobs.start_finalized(
            id.clone(),
            sql.to_string(),
            Arc::new(session.worker_settings.0),
            distributed,
            &session.rules,
            move || async move {
                let _exclusive = this.catalog.pins.exclusive(&insert.table).await;
                let folder = target.folder(&entry.path);
                let overwrite = insert.overwrite.then_some(mode);
                table_insert::commit(&staged, &folder, target.dynamic.len(), overwrite, &job)
                    .map_err(|e| {
                        CoordinatorError::Internal(format!(
                            "INSERT into {}: moving the new files into {}: {e}",
                            insert.table,
                            folder.display()
                        ))
                    })?;
                Ok(None)
            },
        );
        self.clean_up_after(&id, staging);
        self.follow_lineage(&id, sql, &written, output);
        Ok(id)
    }

    /// `CREATE TABLE` of a Parquet folder: empty with its declared columns, or filled by a
    /// query; partitioned when it says PARTITIONED BY.
    pub(super) async fn create_file_table(
        self: &Arc<Self>,
        sql: &str,
        create: CreateFileTable,
        session: JobSession,
        workers: usize,
    ) -> Result<JobId, CoordinatorError> {
        check_table_name(&create.name)?;
        let id = JobId::new_random();
        if self.catalog.contains(&create.name) {
            if create.if_not_exists {
                self.jobs.insert_finished(
                    id.clone(),
                    sql.to_string(),
                    Arc::new(Schema::empty()),
                    vec![],
                );
                return Ok(id);
            }
            return Err(CoordinatorError::Query(format!(
                "table {} already exists",
                create.name
            )));
        }
        let dir = create.location.clone().unwrap_or_else(|| {
            self.table_dir
                .join(&create.name)
                .to_string_lossy()
                .to_string()
        });
        if s3_bucket(&dir).is_some() {
            return Err(CoordinatorError::Query(format!(
                "CREATE TABLE {}: tables made in S3 buckets are bucketed ones for now \
                 (WITH (bucket_by = ..., buckets = N, location = 's3://...') AS SELECT)",
                create.name
            )));
        }
        let dir = self.catalog.data_roots.check(&dir)?;
        if std::fs::read_dir(&dir).is_ok_and(|mut entries| entries.next().is_some()) {
            return Err(CoordinatorError::Query(format!(
                "cannot create table {} at {}: the folder is not empty",
                create.name,
                dir.display()
            )));
        }
        let state = session.ctx.state();
        let Some(query) = &create.query else {
            let declared = state
                .create_logical_plan(&format!(
                    "CREATE TABLE tally_columns ({})",
                    create.columns.join(", ")
                ))
                .await
                .map_err(CoordinatorError::from_datafusion)?;
            let LogicalPlan::Ddl(DdlStatement::CreateMemoryTable(declared)) = declared else {
                return Err(CoordinatorError::Internal(
                    "column list did not plan as a table".to_string(),
                ));
            };
            let layout = TableLayout::from_table_schema(
                declared.input.schema().as_arrow(),
                &create.partition_by,
            )?;
            self.make_table(&create.name, &dir, &layout, None).await?;
            self.jobs.insert_finished(
                id.clone(),
                sql.to_string(),
                Arc::new(Schema::empty()),
                vec![],
            );
            return Ok(id);
        };
        let staging = staging_folder(&dir, &id);
        let (plan, layout, written) = async {
            let logical = super::spark::logical_plan(&state, query).await?;
            let query = DataFrame::new(state.clone(), logical);
            let schema: SchemaRef = Arc::new(query.schema().as_arrow().clone());
            let layout = TableLayout::from_table_schema(&schema, &create.partition_by)
                .map_err(|e| DataFusionError::Plan(e.to_string()))?;
            // File columns first, partition columns last, as the table has them.
            let ordered = layout.table_schema();
            let columns: Vec<Expr> = ordered
                .fields()
                .iter()
                .map(|f| {
                    let source = schema.index_of(f.name())?;
                    Ok(Expr::Column(query.schema().columns()[source].clone()).alias(f.name()))
                })
                .collect::<Result<_, DataFusionError>>()?;
            let query = query.select(columns)?;
            let written = query.logical_plan().clone();
            let physical = query.create_physical_plan().await?;
            let sink = HivePartitionSinkExec::try_new(
                physical,
                staging.clone(),
                layout.partition_names(),
            )?;
            Ok::<_, DataFusionError>((Arc::new(sink) as Arc<dyn ExecutionPlan>, layout, written))
        }
        .await
        .map_err(CoordinatorError::from_datafusion)?;
        let output = WrittenTable {
            table: create.name.clone(),
            location: dir.to_string_lossy().to_string(),
            schema: layout.table_schema(),
            action: "create_table",
        };
        let distributed = session.distribute(&id, plan, workers)?;
        let this = self.clone();
        let staged = staging.clone();
        let name = create.name.clone();
        self.jobs.start_finalized(
            id.clone(),
            sql.to_string(),
            Arc::new(session.worker_settings.0),
            distributed,
            &session.rules,
            move || async move {
                this.make_table(&name, &dir, &layout, Some(&staged)).await?;
                Ok(None)
            },
        );
        self.clean_up_after(&id, staging);
        self.follow_lineage(&id, sql, &written, output);
        Ok(id)
    }

    /// Puts the table's folder in place (the staged rows, or empty), records its layout and
    /// registers it.
    async fn make_table(
        &self,
        name: &str,
        dir: &Path,
        layout: &TableLayout,
        staged: Option<&Path>,
    ) -> Result<(), CoordinatorError> {
        let failed = |e: std::io::Error| {
            CoordinatorError::Internal(format!("creating table {name} at {}: {e}", dir.display()))
        };
        match staged.filter(|s| s.exists()) {
            Some(staging) => {
                if dir.exists() {
                    // An empty folder (checked when the job began) gives way to the rows.
                    std::fs::remove_dir(dir).map_err(failed)?;
                }
                std::fs::rename(staging, dir).map_err(failed)?;
            }
            None => std::fs::create_dir_all(dir).map_err(failed)?,
        }
        layout.write(dir)?;
        self.catalog
            .register(name, &dir.to_string_lossy(), Some(TableFormat::Parquet))
            .await?;
        Ok(())
    }
}
