//! Spark SQL that DataFusion's planner reads otherwise or not at all, rewritten in the
//! statement before planning. `a DIV b`, which DataFusion parses but cannot plan, is Spark's
//! quotient truncated to a BIGINT: `CAST(a / b AS BIGINT)`. `explode(array)` is DataFusion's
//! `unnest(array)`, and
//!
//! ```sql
//! SELECT t.ad, tag FROM t LATERAL VIEW explode(t.tags) v AS tag
//! ```
//!
//! which DataFusion's planner refuses, becomes a derived table under the base table's name,
//! one per view, so every column of the base keeps its qualifier:
//!
//! ```sql
//! SELECT t.ad, tag FROM (SELECT t.*, unnest(t.tags) AS tag FROM t) AS t
//! ```
//!
//! with `v.tag` read as `t.tag`. A LATERAL VIEW needs one table in FROM (no joins beside it);
//! `LATERAL VIEW OUTER` is refused (unnest drops rows whose array is empty, as Spark's
//! non-OUTER explode does).

use std::ops::ControlFlow;

use datafusion::common::{DataFusionError, Result, plan_datafusion_err, plan_err};
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{
    BinaryOperator, Expr, Ident, ObjectName, Query, Select, SetExpr, TableFactor, VisitMut,
    VisitorMut, visit_expressions_mut,
};
use datafusion::sql::sqlparser::dialect::SparkSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

/// Rewrites Spark's generators in `statement` into DataFusion's unnest.
pub(crate) fn rewrite_generators(statement: &mut DFStatement) -> Result<()> {
    match statement {
        DFStatement::Statement(inner) => match inner.visit(&mut Generators) {
            ControlFlow::Break(e) => Err(e),
            ControlFlow::Continue(()) => Ok(()),
        },
        DFStatement::Explain(explain) => rewrite_generators(&mut explain.statement),
        _ => Ok(()),
    }
}

struct Generators;

impl VisitorMut for Generators {
    type Break = DataFusionError;

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<Self::Break> {
        rename_explode(expr);
        if let Err(e) = integer_division(expr) {
            return ControlFlow::Break(e);
        }
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, query: &mut Query) -> ControlFlow<Self::Break> {
        let mut renames = Vec::new();
        if let Err(e) = rewrite_set_expr(&mut query.body, &mut renames) {
            return ControlFlow::Break(e);
        }
        for (view, base) in renames {
            let _ = visit_expressions_mut(query, |expr| {
                requalify(expr, &view, &base);
                ControlFlow::<()>::Continue(())
            });
        }
        ControlFlow::Continue(())
    }
}

fn rename_explode(expr: &mut Expr) {
    if let Expr::Function(function) = expr
        && function.name.to_string().eq_ignore_ascii_case("explode")
    {
        function.name = ObjectName::from(vec![Ident::new("unnest")]);
    }
}

fn integer_division(expr: &mut Expr) -> Result<()> {
    if let Expr::BinaryOp {
        left,
        op: BinaryOperator::MyIntegerDivide,
        right,
    } = expr
    {
        let sql = format!("CAST(({left}) / ({right}) AS BIGINT)");
        *expr = Parser::new(&SparkSqlDialect {})
            .try_with_sql(&sql)
            .and_then(|mut parser| parser.parse_expr())
            .map_err(|e| plan_datafusion_err!("DIV: {e}"))?;
    }
    Ok(())
}

fn requalify(expr: &mut Expr, view: &Ident, base: &Ident) {
    if let Expr::CompoundIdentifier(parts) = expr
        && parts.len() == 2
        && parts[0].value.eq_ignore_ascii_case(&view.value)
    {
        parts[0] = base.clone();
    }
}

fn rewrite_set_expr(body: &mut SetExpr, renames: &mut Vec<(Ident, Ident)>) -> Result<()> {
    match body {
        SetExpr::Select(select) => rewrite_select(select, renames),
        SetExpr::SetOperation { left, right, .. } => {
            rewrite_set_expr(left, renames)?;
            rewrite_set_expr(right, renames)
        }
        _ => Ok(()),
    }
}

fn rewrite_select(select: &mut Select, renames: &mut Vec<(Ident, Ident)>) -> Result<()> {
    if select.lateral_views.is_empty() {
        return Ok(());
    }
    let [from] = select.from.as_slice() else {
        return plan_err!("LATERAL VIEW needs exactly one table in FROM");
    };
    if !from.joins.is_empty() {
        return plan_err!("LATERAL VIEW beside a JOIN is not supported: join in a subquery");
    }
    let base =
        match &from.relation {
            TableFactor::Table { alias: Some(a), .. }
            | TableFactor::Derived { alias: Some(a), .. } => a.name.clone(),
            TableFactor::Table {
                name, alias: None, ..
            } => match name.0.last() {
                Some(part) => part.as_ident().cloned().ok_or_else(|| {
                    plan_datafusion_err!("LATERAL VIEW over {name}: name the table")
                })?,
                None => return plan_err!("LATERAL VIEW over an unnamed table"),
            },
            other => return plan_err!("LATERAL VIEW over {other}: give it an alias"),
        };
    let mut relation = from.relation.to_string();
    for view in std::mem::take(&mut select.lateral_views) {
        if view.outer {
            return plan_err!("LATERAL VIEW OUTER is not supported");
        }
        let mut generator = view.lateral_view.clone();
        rename_explode(&mut generator);
        let column = match view.lateral_col_alias.as_slice() {
            [] => Ident::new("col"),
            [one] => one.clone(),
            _ => return plan_err!("LATERAL VIEW {}: one column alias", view.lateral_view_name),
        };
        relation = format!("(SELECT {base}.*, {generator} AS {column} FROM {relation}) AS {base}");
        if let Some(name) = view.lateral_view_name.0.last().and_then(|p| p.as_ident()) {
            renames.push((name.clone(), base.clone()));
        }
    }
    select.from = parse_from(&relation)?;
    Ok(())
}

/// The FROM clause of `SELECT * FROM relation`, parsed as Spark SQL.
fn parse_from(relation: &str) -> Result<Vec<datafusion::sql::sqlparser::ast::TableWithJoins>> {
    let sql = format!("SELECT * FROM {relation}");
    let mut statements = Parser::parse_sql(&SparkSqlDialect {}, &sql)
        .map_err(|e| plan_datafusion_err!("LATERAL VIEW rewrite: {e}"))?;
    let Some(datafusion::sql::sqlparser::ast::Statement::Query(query)) = statements.pop() else {
        return plan_err!("LATERAL VIEW rewrite: not a query");
    };
    match *query.body {
        SetExpr::Select(select) => Ok(select.from),
        _ => plan_err!("LATERAL VIEW rewrite: not a select"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::parser::DFParserBuilder;

    fn rewritten(sql: &str) -> String {
        let dialect = SparkSqlDialect {};
        let mut statement = DFParserBuilder::new(sql)
            .with_dialect(&dialect)
            .build()
            .unwrap()
            .parse_statement()
            .unwrap();
        rewrite_generators(&mut statement).unwrap();
        statement.to_string()
    }

    #[test]
    fn lateral_views_become_derived_tables_under_the_base_name() {
        assert_eq!(
            rewritten("SELECT t.ad, v.tag FROM ads t LATERAL VIEW explode(t.tags) v AS tag"),
            "SELECT t.ad, t.tag FROM (SELECT t.*, unnest(t.tags) AS tag FROM ads t) AS t"
        );
        assert_eq!(
            rewritten("SELECT a DIV b AS q FROM t"),
            "SELECT CAST((a) / (b) AS BIGINT) AS q FROM t"
        );
        assert_eq!(
            rewritten("SELECT explode(tags) AS tag FROM ads"),
            "SELECT unnest(tags) AS tag FROM ads"
        );
    }
}
