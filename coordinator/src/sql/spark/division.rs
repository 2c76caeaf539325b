//! Spark's `/` divides as doubles: `7 / 2` is 3.5 and `sum(clicks) / count(*)` a fraction,
//! where DataFusion divides integers as integers (3). In a Spark session this analyzer rule,
//! run before type coercion, casts both sides of every `/` between integers to DOUBLE. It
//! keeps each expression's name, so the rest of the plan still finds its columns.

use arrow::datatypes::DataType;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, Result};
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::utils::merge_schema;
use datafusion::logical_expr::{BinaryExpr, Cast, Expr, ExprSchemable, LogicalPlan, Operator};
use datafusion::optimizer::analyzer::AnalyzerRule;

#[derive(Debug, Default)]
pub(crate) struct SparkDivision;

impl AnalyzerRule for SparkDivision {
    fn name(&self) -> &str {
        "spark_division"
    }

    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        plan.transform_up_with_subqueries(|plan| {
            let schema = input_schema(&plan)?;
            let names = NamePreserver::new(&plan);
            let rewritten = plan.map_expressions(|expr| {
                let name = names.save(&expr);
                let rewritten = expr.transform_up(|e| divide_as_doubles(e, &schema))?;
                Ok(rewritten.update_data(|e| name.restore(e)))
            })?;
            if rewritten.transformed {
                rewritten.map_data(|plan| plan.recompute_schema())
            } else {
                Ok(rewritten)
            }
        })
        .map(|t| t.data)
    }
}

/// The columns a node's expressions can read: its inputs' (a scan's own for its filters).
fn input_schema(plan: &LogicalPlan) -> Result<DFSchema> {
    let mut schema = merge_schema(&plan.inputs());
    if let LogicalPlan::TableScan(scan) = plan {
        schema.merge(&DFSchema::try_from_qualified_schema(
            scan.table_name.clone(),
            &scan.source.schema(),
        )?);
    }
    Ok(schema)
}

fn divide_as_doubles(expr: Expr, schema: &DFSchema) -> Result<Transformed<Expr>> {
    let Expr::BinaryExpr(BinaryExpr {
        left,
        op: Operator::Divide,
        right,
    }) = expr
    else {
        return Ok(Transformed::no(expr));
    };
    let integer = |e: &Expr| {
        e.get_type(schema)
            .is_ok_and(|t| t.is_integer() || t == DataType::Null)
    };
    if !(integer(&left) && integer(&right)) {
        return Ok(Transformed::no(Expr::BinaryExpr(BinaryExpr::new(
            left,
            Operator::Divide,
            right,
        ))));
    }
    let double = |e: Box<Expr>| Box::new(Expr::Cast(Cast::new(e, DataType::Float64)));
    Ok(Transformed::yes(Expr::BinaryExpr(BinaryExpr::new(
        double(left),
        Operator::Divide,
        double(right),
    ))))
}

#[cfg(test)]
mod tests {
    use datafusion::prelude::SessionContext;

    use super::super::SqlDialect;

    async fn answer(ctx: &SessionContext, sql: &str) -> String {
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        arrow::util::pretty::pretty_format_batches(&batches)
            .unwrap()
            .to_string()
    }

    #[tokio::test]
    async fn integers_divide_as_doubles_and_keep_their_names() {
        let ctx = SessionContext::new();
        assert!(answer(&ctx, "SELECT 7 / 2 AS q").await.contains("| 3 "));
        let spark = SessionContext::new_with_state(SqlDialect::Spark.apply(ctx.state()));
        let sql = "SELECT a / b, sum(a) / count(*) AS avg_a, 7.5 / 2 AS d \
                   FROM (VALUES (7, 2), (1, 4)) AS t(a, b) GROUP BY a, b ORDER BY a / b";
        let text = answer(&spark, sql).await;
        assert!(text.contains("| 0.25 "), "{text}");
        assert!(text.contains("| 3.5 "), "{text}");
        assert!(text.contains("| 3.75 "), "{text}");
        assert!(text.contains("t.a / t.b"), "{text}");
    }
}
