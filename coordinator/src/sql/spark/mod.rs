//! Spark SQL sessions (`SET tally.sql_dialect = 'spark'`): report SQL written for Spark runs
//! unchanged. What it takes, each from the piece of DataFusion made for it:
//! - the parser: DataFusion's `spark` dialect (backquoted identifiers, `LONG`, `DIV`, ...);
//! - NULL ordering: Spark puts NULLs first in ascending order and last in descending
//!   (`datafusion.sql_parser.default_null_ordering = nulls_min`);
//! - functions: `datafusion-spark`'s, over DataFusion's of the same name, and Spark's names
//!   for functions DataFusion has (`tally_common::spark`);
//! - `/` between integers divides as doubles (`division.rs`), `DIV` as Spark's, and
//!   `explode`/`LATERAL VIEW` as DataFusion's unnest (`statement.rs`).
//!
//! A job's own `datafusion.*` settings win over these.

mod division;
mod statement;

use std::sync::Arc;

use datafusion::common::config::Dialect;
use datafusion::execution::SessionState;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::logical_expr::LogicalPlan;
use datafusion::optimizer::analyzer::{Analyzer, AnalyzerRule};
use tally_common::spark::SparkFunctionPlanner;

use crate::error::CoordinatorError;

/// The dialect a job's SQL is read in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SqlDialect {
    /// DataFusion's own semantics (PostgreSQL-like).
    DataFusion,
    /// Spark SQL's.
    Spark,
}

impl SqlDialect {
    pub(crate) fn parse(value: &str) -> Result<Self, CoordinatorError> {
        match value.to_ascii_lowercase().as_str() {
            "datafusion" | "" => Ok(Self::DataFusion),
            "spark" | "sparksql" => Ok(Self::Spark),
            other => Err(CoordinatorError::Query(format!(
                "tally.sql_dialect = {other}: use spark or datafusion"
            ))),
        }
    }

    /// DataFusion settings the dialect implies, applied unless the job sets them itself.
    pub(crate) fn settings(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Self::DataFusion => &[],
            Self::Spark => &[
                ("datafusion.sql_parser.dialect", "spark"),
                ("datafusion.sql_parser.default_null_ordering", "nulls_min"),
            ],
        }
    }

    /// `state` with the dialect's functions and rules. Must be the state's last rebuild: a
    /// rebuild re-registers every function in hash order, and DataFusion's `to_char` still
    /// claims the alias `date_format` (as datafusion-spark's `date_add` does the name of
    /// ours), so which one a name means would be left to chance.
    pub(crate) fn apply(self, state: SessionState) -> SessionState {
        if self == Self::DataFusion {
            return state;
        }
        let mut analyzer = Analyzer::new();
        // Before type coercion, which then types the casts like any user's.
        let mut rules: Vec<Arc<dyn AnalyzerRule + Send + Sync>> =
            vec![Arc::new(division::SparkDivision)];
        rules.extend(state.analyzer().rules.iter().cloned());
        analyzer.rules = rules;
        analyzer.function_rewrites = state.analyzer().function_rewrites().to_vec();

        let mut builder = SessionStateBuilder::new_from_existing(state);
        *builder.analyzer() = Some(analyzer);
        builder
            .expr_planners()
            .get_or_insert_with(Vec::new)
            .insert(0, Arc::new(SparkFunctionPlanner));
        builder
            .scalar_functions()
            .get_or_insert_with(Vec::new)
            .extend(tally_common::spark::scalar_functions());
        builder
            .aggregate_functions()
            .get_or_insert_with(Vec::new)
            .extend(tally_common::spark::aggregate_functions());
        builder
            .window_functions()
            .get_or_insert_with(Vec::new)
            .extend(tally_common::spark::window_functions());
        builder.build()
    }
}

/// The logical plan of `sql` as the session's dialect reads it: in Spark sessions, Spark's
/// generators (`explode`, `LATERAL VIEW`) are rewritten into DataFusion's unnest first.
pub(crate) async fn logical_plan(
    state: &SessionState,
    sql: &str,
) -> datafusion::common::Result<LogicalPlan> {
    let dialect = state.config().options().sql_parser.dialect;
    if dialect != Dialect::Spark {
        return state.create_logical_plan(sql).await;
    }
    let mut statement = state.sql_to_statement(sql, &dialect)?;
    statement::rewrite_generators(&mut statement)?;
    state.statement_to_plan(statement).await
}
