//! Helpers shared by the planner's rule tests: a session with tables written as Parquet (so
//! plans carry real statistics), as bucketed Parquet, or held in memory with a chosen number
//! of partitions; a query planned as DataFusion or as Tally would plan it; the nodes of a
//! plan; and an answer as text.

use std::path::PathBuf;
use std::sync::Arc;

use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::datasource::MemTable;
use datafusion::physical_plan::{ExecutionPlan, collect, displayable};
use datafusion::prelude::{SessionConfig, SessionContext};
use tally_common::bucketing::{BucketSpec, BucketedParquetWriter};

use crate::options::Rules;
use crate::planner::rewrite;
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

    /// The plan Tally's rules make of `sql` with `settings`, and its answer.
    pub(crate) async fn run(&self, sql: &str, settings: &[(&str, &str)]) -> (String, String) {
        let settings = JobSettings(
            settings
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        let session = job_session(&self.ctx, &settings, 6).unwrap();
        let state = session.ctx.state();
        let logical = state.create_logical_plan(sql).await.unwrap();
        let physical = state.create_physical_plan(&logical).await.unwrap();
        let rules = Rules::from_config(state.config().options()).unwrap();
        let plan = rewrite(physical, &rules, 6).unwrap();
        let text = displayable(plan.as_ref()).indent(false).to_string();
        let batches = collect(plan, session.ctx.task_ctx()).await.unwrap();
        (text, pretty_format_batches(&batches).unwrap().to_string())
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
