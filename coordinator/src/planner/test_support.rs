//! Helpers shared by the planner's rule tests: a session with tables written as Parquet (so
//! plans carry real statistics), as one Parquet file of several row groups, as one CSV file,
//! as bucketed Parquet, or held in memory with a chosen number of partitions; a query planned
//! as DataFusion or as Tally would plan it; the nodes of a plan; and an answer as text.

use std::path::PathBuf;
use std::sync::Arc;

use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::datasource::MemTable;
use datafusion::execution::TaskContext;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::file::properties::WriterProperties;
use datafusion::physical_plan::{ExecutionPlan, collect, displayable};
use datafusion::prelude::{SessionConfig, SessionContext};
use tally_common::bucketing::{BucketSpec, BucketedParquetWriter};

use crate::options::Rules;
use crate::planner::rewrite;
use crate::planner::rules::storage_splits::STORAGE_SPLITS;
use crate::sql::catalog::register_table;
use crate::sql::session::{JobSettings, base_config, job_session};

/// A session with tables registered for a test; files it wrote are removed on drop.
pub(crate) struct Tables {
    pub ctx: SessionContext,
    dir: PathBuf,
}

impl Tables {
    /// A coordinator session with each `(name, query)` written as `parts` Parquet files (the
    /// query gets `{lo}` and `{hi}`, the bounds of `value` for each part) and registered.
    pub(crate) async fn new(tables: &[(&str, &str)], parts: u64, rows_per_part: u64) -> Self {
        let this = Self::empty(SessionContext::new_with_config(base_config()));
        for (name, query) in tables {
            let table_dir = this.dir.join(name);
            std::fs::create_dir_all(&table_dir).unwrap();
            for part in 0..parts {
                let query = query
                    .replace("{lo}", &(part * rows_per_part + 1).to_string())
                    .replace("{hi}", &((part + 1) * rows_per_part).to_string());
                this.ctx
                    .sql(&format!(
                        "COPY ({query}) TO '{}/p{part}.parquet'",
                        table_dir.display()
                    ))
                    .await
                    .unwrap()
                    .collect()
                    .await
                    .unwrap();
            }
            this.ctx
                .sql(&format!(
                    "CREATE EXTERNAL TABLE {name} STORED AS PARQUET LOCATION '{}/'",
                    table_dir.display()
                ))
                .await
                .unwrap();
        }
        this
    }

    /// A plain DataFusion session of `partitions` target partitions without round-robin
    /// repartitioning (so the only exchanges are those the plan needs), with each
    /// `(name, query)` held in memory as `parts` partitions, as that many scanned files give.
    pub(crate) async fn in_memory(
        partitions: usize,
        tables: &[(&str, &str)],
        parts: usize,
    ) -> Self {
        let config = SessionConfig::new()
            .with_target_partitions(partitions)
            .set_bool("datafusion.optimizer.enable_round_robin_repartition", false);
        let this = Self::empty(SessionContext::new_with_config(config));
        for (name, query) in tables {
            let frame = this.ctx.sql(query).await.unwrap();
            let schema = Arc::new(frame.schema().as_arrow().clone());
            let all = concat_batches(&schema, &frame.collect().await.unwrap()).unwrap();
            let per_part = all.num_rows().div_ceil(parts);
            let partitions = (0..parts)
                .map(|p| {
                    let start = (p * per_part).min(all.num_rows());
                    let len = per_part.min(all.num_rows() - start);
                    vec![all.slice(start, len)]
                })
                .collect();
            let table = MemTable::try_new(schema, partitions).unwrap();
            this.ctx.register_table(*name, Arc::new(table)).unwrap();
        }
        this
    }

    /// Adds table `name`, the rows of `query` written into `buckets` bucket files hashed on
    /// `columns` and registered as the coordinator registers a bucketed table.
    pub(crate) async fn add_bucketed(
        &self,
        name: &str,
        query: &str,
        columns: &[&str],
        buckets: usize,
    ) {
        let frame = self.ctx.sql(query).await.unwrap();
        let schema = Arc::new(frame.schema().as_arrow().clone());
        let spec =
            BucketSpec::new(columns.iter().map(|c| c.to_string()).collect(), buckets).unwrap();
        let table_dir = self.dir.join(name);
        let mut writer = BucketedParquetWriter::try_new(&table_dir, schema, spec).unwrap();
        for batch in frame.collect().await.unwrap() {
            writer.write(batch).unwrap();
        }
        writer.finish().unwrap();
        register_table(&self.ctx, name, &table_dir.to_string_lossy(), None)
            .await
            .unwrap();
    }

    /// Adds table `name`, the rows of `query` written as one Parquet file of
    /// `rows_per_group`-row row groups; returns the file's size in bytes.
    pub(crate) async fn add_parquet_file(
        &self,
        name: &str,
        query: &str,
        rows_per_group: usize,
    ) -> u64 {
        let frame = self.ctx.sql(query).await.unwrap();
        let schema = Arc::new(frame.schema().as_arrow().clone());
        std::fs::create_dir_all(&self.dir).unwrap();
        let path = self.dir.join(format!("{name}.parquet"));
        let properties = WriterProperties::builder()
            .set_max_row_group_row_count(Some(rows_per_group))
            .build();
        let file = std::fs::File::create(&path).unwrap();
        let mut writer = ArrowWriter::try_new(file, schema, Some(properties)).unwrap();
        for batch in frame.collect().await.unwrap() {
            writer.write(&batch).unwrap();
        }
        writer.close().unwrap();
        register_table(&self.ctx, name, &path.to_string_lossy(), None)
            .await
            .unwrap();
        std::fs::metadata(&path).unwrap().len()
    }

    /// Adds table `name`, the rows of `query` written as one CSV file with a header row;
    /// returns the file's size in bytes.
    pub(crate) async fn add_csv_file(&self, name: &str, query: &str) -> u64 {
        let path = self.dir.join(format!("{name}.csv"));
        std::fs::create_dir_all(&self.dir).unwrap();
        self.ctx
            .sql(&format!("COPY ({query}) TO '{}'", path.display()))
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        register_table(&self.ctx, name, &path.to_string_lossy(), None)
            .await
            .unwrap();
        std::fs::metadata(&path).unwrap().len()
    }

    /// The physical plan of `sql` in a job's session with `settings` on 3 workers (6 target
    /// partitions), before Tally's rewrites, and that session's task context.
    pub(crate) async fn job_plan(
        &self,
        sql: &str,
        settings: &[(&str, &str)],
    ) -> (Arc<dyn ExecutionPlan>, Arc<TaskContext>) {
        self.plan_in_job(sql, settings, true).await
    }

    async fn plan_in_job(
        &self,
        sql: &str,
        settings: &[(&str, &str)],
        storage_splits: bool,
    ) -> (Arc<dyn ExecutionPlan>, Arc<TaskContext>) {
        let settings = JobSettings(
            settings
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        let session = job_session(&self.ctx, &settings, 6).unwrap();
        let mut state = session.ctx.state();
        if !storage_splits {
            let rules = state
                .physical_optimizers()
                .iter()
                .filter(|rule| rule.name() != STORAGE_SPLITS)
                .cloned()
                .collect();
            state = SessionStateBuilder::new_from_existing(state)
                .with_physical_optimizer_rules(rules)
                .build();
        }
        let logical = state.create_logical_plan(sql).await.unwrap();
        let physical = state.create_physical_plan(&logical).await.unwrap();
        (physical, Arc::new(TaskContext::from(&state)))
    }

    /// DataFusion's physical plan of `sql`, before any of Tally's rules.
    pub(crate) async fn physical(&self, sql: &str) -> Arc<dyn ExecutionPlan> {
        let frame = self.ctx.sql(sql).await.unwrap();
        frame.create_physical_plan().await.unwrap()
    }

    /// What `plan` returns, as a table of text.
    pub(crate) async fn answer(&self, plan: Arc<dyn ExecutionPlan>) -> String {
        let batches = collect(plan, self.ctx.task_ctx()).await.unwrap();
        pretty_format_batches(&batches).unwrap().to_string()
    }

    /// The plan Tally's rules make of `sql` with `settings`, and its answer. Scans keep one
    /// partition per file, as DataFusion lists them (the `storage_splits` rule is off): the
    /// other rules' tests need several scan partitions from a few small files.
    pub(crate) async fn run(&self, sql: &str, settings: &[(&str, &str)]) -> (String, String) {
        let (physical, task_ctx) = self.plan_in_job(sql, settings, false).await;
        let rules = Rules::from_config(task_ctx.session_config().options()).unwrap();
        let plan = rewrite(physical, &rules, 6).unwrap();
        let text = displayable(plan.as_ref()).indent(false).to_string();
        let batches = collect(plan, task_ctx).await.unwrap();
        (text, pretty_format_batches(&batches).unwrap().to_string())
    }

    /// Where this session's files are.
    pub(crate) fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    fn empty(ctx: SessionContext) -> Self {
        let dir = std::env::temp_dir().join(format!("tally-rule-test-{}", uuid::Uuid::new_v4()));
        Self { ctx, dir }
    }
}

impl Drop for Tables {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

/// `inspect` of every node of type `T` in `plan`, top down.
pub(crate) fn nodes<T: ExecutionPlan, R>(
    plan: &Arc<dyn ExecutionPlan>,
    mut inspect: impl FnMut(&T) -> R,
) -> Vec<R> {
    let mut found = Vec::new();
    plan.apply(|node| {
        if let Some(node) = node.downcast_ref::<T>() {
            found.push(inspect(node));
        }
        Ok(TreeNodeRecursion::Continue)
    })
    .unwrap();
    found
}

/// `plan` as indented text, for assertion messages.
pub(crate) fn shown(plan: &Arc<dyn ExecutionPlan>) -> String {
    displayable(plan.as_ref()).indent(false).to_string()
}
