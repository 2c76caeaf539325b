//! Helpers for rule tests: tables written as Parquet (so plans carry real statistics), and a
//! query planned as Tally would plan it, then run in this process.

use std::path::PathBuf;

use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::physical_plan::{collect, displayable};
use datafusion::prelude::SessionContext;

use crate::options::Rules;
use crate::planner::rewrite;
use crate::sql::session::{JobSettings, base_config, job_session};

/// A coordinator session with each `(name, query)` written as `parts` Parquet files (the
/// query gets `{lo}` and `{hi}`, the bounds of `value` for each part) and registered.
pub(crate) struct Tables {
    pub ctx: SessionContext,
    dir: PathBuf,
}

impl Tables {
    pub(crate) async fn new(tables: &[(&str, &str)], parts: u64, rows_per_part: u64) -> Self {
        let dir = std::env::temp_dir().join(format!("tally-rule-test-{}", uuid::Uuid::new_v4()));
        let ctx = SessionContext::new_with_config(base_config());
        for (name, query) in tables {
            let table_dir = dir.join(name);
            std::fs::create_dir_all(&table_dir).unwrap();
            for part in 0..parts {
                let query = query
                    .replace("{lo}", &(part * rows_per_part + 1).to_string())
                    .replace("{hi}", &((part + 1) * rows_per_part).to_string());
                ctx.sql(&format!(
                    "COPY ({query}) TO '{}/p{part}.parquet'",
                    table_dir.display()
                ))
                .await
                .unwrap()
                .collect()
                .await
                .unwrap();
            }
            ctx.sql(&format!(
                "CREATE EXTERNAL TABLE {name} STORED AS PARQUET LOCATION '{}/'",
                table_dir.display()
            ))
            .await
            .unwrap();
        }
        Self { ctx, dir }
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
}

impl Drop for Tables {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.dir).ok();
    }
}
