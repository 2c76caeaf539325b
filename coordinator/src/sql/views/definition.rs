//! What a materialized view's query means: the source table, the dimensions it groups by and
//! the aggregates whose partial states it keeps, checked from DataFusion's analyzed logical
//! plan. Anything whose states cannot be merged exactly is refused here, by name.

use datafusion::common::Column;
use datafusion::execution::SessionState;
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::{Expr, LogicalPlan};

use crate::error::CoordinatorError;

/// An aggregate a view can keep as a mergeable state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StateKind {
    Sum,
    Count,
    Min,
    Max,
    Avg,
    /// `COUNT(DISTINCT x)`: an exact compact value set.
    CountDistinct,
    /// `SUM(DISTINCT x)`: an exact compact value set.
    SumDistinct,
    /// `APPROX_DISTINCT(x)`: a HyperLogLog sketch.
    ApproxDistinct,
}

impl StateKind {
    fn of(function: &AggregateFunction) -> Result<Self, CoordinatorError> {
        let name = function.func.name().to_ascii_lowercase();
        let params = &function.params;
        let refused = |why: &str| {
            CoordinatorError::Query(format!(
                "a materialized view cannot keep {name}(...){why}: it keeps sum, count, min, \
                 max, avg, count(DISTINCT), sum(DISTINCT) and approx_distinct"
            ))
        };
        if params.filter.is_some() {
            return Err(refused(" with a FILTER clause"));
        }
        if !params.order_by.is_empty() {
            return Err(refused(" with an ORDER BY"));
        }
        let kind = match (name.as_str(), params.distinct) {
            ("sum", false) => Self::Sum,
            ("count", false) => Self::Count,
            ("min", _) => Self::Min,
            ("max", _) => Self::Max,
            ("avg" | "mean", false) => Self::Avg,
            ("count", true) => Self::CountDistinct,
            ("sum", true) => Self::SumDistinct,
            ("approx_distinct", false) => Self::ApproxDistinct,
            (_, true) => return Err(refused(" with DISTINCT")),
            _ => return Err(refused("")),
        };
        Ok(kind)
    }
}

/// A grouping column of the view: its name in the view and its expression over the source.
#[derive(Debug, Clone)]
pub(crate) struct Dimension {
    pub name: String,
    pub expr: Expr,
}

/// An aggregate column of the view.
#[derive(Debug, Clone)]
pub(crate) struct ViewAggregate {
    pub name: String,
    pub kind: StateKind,
    /// DataFusion's aggregate call (analyzed: arguments already coerced).
    pub function: AggregateFunction,
}

/// A column of the view, in SELECT order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ViewColumn {
    Dimension(usize),
    Aggregate(usize),
}

#[derive(Debug, Clone)]
pub(crate) struct ViewDefinition {
    pub source: String,
    pub dimensions: Vec<Dimension>,
    pub aggregates: Vec<ViewAggregate>,
    pub columns: Vec<ViewColumn>,
    /// What the aggregate reads: the source table, filtered and projected.
    pub input: LogicalPlan,
}

const SHAPE: &str = "a materialized view is SELECT <dimensions>, <aggregates> FROM <table> \
                     [WHERE ...] GROUP BY <dimensions>";

impl ViewDefinition {
    /// Plans `query` in `state` and checks it has the shape a view can keep.
    pub(crate) async fn plan(state: &SessionState, query: &str) -> Result<Self, CoordinatorError> {
        let logical = state
            .create_logical_plan(query)
            .await
            .map_err(CoordinatorError::from_datafusion)?;
        let analyzed = state
            .analyzer()
            .execute_and_check(logical, state.config_options(), |_, _| {})
            .map_err(CoordinatorError::from_datafusion)?;
        Self::from_plan(&analyzed)
    }

    fn from_plan(plan: &LogicalPlan) -> Result<Self, CoordinatorError> {
        let shape = || CoordinatorError::Query(SHAPE.to_string());
        let LogicalPlan::Projection(projection) = plan else {
            return Err(shape());
        };
        let LogicalPlan::Aggregate(aggregate) = projection.input.as_ref() else {
            return Err(CoordinatorError::Query(format!(
                "{SHAPE} (no HAVING, ORDER BY, LIMIT or expressions over aggregates)"
            )));
        };
        if aggregate.group_expr.is_empty() {
            return Err(CoordinatorError::Query(format!(
                "{SHAPE}: a view without GROUP BY has nothing to refresh by group"
            )));
        }
        if aggregate
            .group_expr
            .iter()
            .any(|e| matches!(e, Expr::GroupingSet(_)))
        {
            return Err(CoordinatorError::Query(
                "a materialized view cannot use GROUPING SETS, ROLLUP or CUBE: keep the finest \
                 grain in the view and roll up in the report"
                    .to_string(),
            ));
        }
        let source = single_source(&aggregate.input)?;
        let groups = aggregate.group_expr.len();
        let mut dimensions: Vec<Option<Dimension>> = vec![None; groups];
        let mut aggregates: Vec<Option<ViewAggregate>> = vec![None; aggregate.aggr_expr.len()];
        let mut columns = Vec::new();
        for (expr, field) in projection.expr.iter().zip(projection.schema.fields()) {
            let name = field.name().clone();
            let Expr::Column(column) = expr.clone().unalias_nested().data else {
                return Err(CoordinatorError::Query(format!(
                    "{SHAPE}: column {name} is an expression over aggregates; compute it in \
                     the report"
                )));
            };
            let index = index_in(&aggregate.schema, &column)?;
            if index < groups {
                if dimensions[index].is_some() {
                    return Err(CoordinatorError::Query(format!(
                        "dimension {name} is selected twice"
                    )));
                }
                dimensions[index] = Some(Dimension {
                    name,
                    expr: aggregate.group_expr[index].clone(),
                });
                columns.push(ViewColumn::Dimension(index));
            } else {
                let at = index - groups;
                let Expr::AggregateFunction(function) =
                    aggregate.aggr_expr[at].clone().unalias_nested().data
                else {
                    return Err(shape());
                };
                if aggregates[at].is_some() {
                    return Err(CoordinatorError::Query(format!(
                        "aggregate {name} is selected twice"
                    )));
                }
                aggregates[at] = Some(ViewAggregate {
                    name,
                    kind: StateKind::of(&function)?,
                    function,
                });
                columns.push(ViewColumn::Aggregate(at));
            }
        }
        let dimensions = dimensions
            .into_iter()
            .enumerate()
            .map(|(i, d)| {
                d.ok_or_else(|| {
                    CoordinatorError::Query(format!(
                        "every GROUP BY expression of a materialized view must be selected \
                         (with a name): {} is not",
                        aggregate.group_expr[i]
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let aggregates = aggregates.into_iter().flatten().collect::<Vec<_>>();
        if aggregates.is_empty() {
            return Err(CoordinatorError::Query(format!(
                "{SHAPE}: the view has no aggregates"
            )));
        }
        let mut names: Vec<&str> = dimensions
            .iter()
            .map(|d| d.name.as_str())
            .chain(aggregates.iter().map(|a| a.name.as_str()))
            .collect();
        names.sort_unstable();
        if let Some(pair) = names.windows(2).find(|pair| pair[0] == pair[1]) {
            return Err(CoordinatorError::Query(format!(
                "two columns of the view are named {}: give each an alias",
                pair[0]
            )));
        }
        Ok(Self {
            source,
            dimensions,
            aggregates,
            columns,
            input: aggregate.input.as_ref().clone(),
        })
    }

    pub(crate) fn dimension(&self, name: &str) -> Option<&Dimension> {
        self.dimensions.iter().find(|d| d.name == name)
    }
}

fn index_in(
    schema: &datafusion::common::DFSchema,
    column: &Column,
) -> Result<usize, CoordinatorError> {
    schema
        .index_of_column(column)
        .map_err(|_| CoordinatorError::Query(SHAPE.to_string()))
}

/// The one table under a view's aggregate, through filters, projections and aliases only.
fn single_source(plan: &LogicalPlan) -> Result<String, CoordinatorError> {
    match plan {
        LogicalPlan::TableScan(scan) => Ok(scan.table_name.table().to_string()),
        LogicalPlan::Filter(filter) => single_source(&filter.input),
        LogicalPlan::Projection(projection) => single_source(&projection.input),
        LogicalPlan::SubqueryAlias(alias) => single_source(&alias.input),
        _ => Err(CoordinatorError::Query(format!(
            "{SHAPE}: a view reads one table, without joins, unions or subqueries"
        ))),
    }
}

impl ViewAggregate {
    /// The aggregate as written, for messages and EXPLAIN.
    pub(crate) fn function_sql(&self) -> String {
        Expr::AggregateFunction(self.function.clone()).to_string()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::datasource::MemTable;
    use datafusion::prelude::SessionContext;

    use super::*;

    fn session() -> SessionState {
        let ctx = SessionContext::new();
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Utf8, true),
            Field::new("b", DataType::Int64, true),
            Field::new("x", DataType::Float64, true),
        ]));
        for name in ["t", "u"] {
            let table = MemTable::try_new(schema.clone(), vec![vec![]]).unwrap();
            ctx.register_table(name, Arc::new(table)).unwrap();
        }
        ctx.state()
    }

    async fn plan(query: &str) -> Result<ViewDefinition, CoordinatorError> {
        ViewDefinition::plan(&session(), query).await
    }

    #[tokio::test]
    async fn dimensions_and_aggregates_are_named_in_select_order() {
        let view = plan(
            "SELECT sum(x) AS s, upper(a) AS ua, count(DISTINCT b) AS users, b \
             FROM t WHERE x > 0 GROUP BY upper(a), b",
        )
        .await
        .unwrap();
        assert_eq!(view.source, "t");
        let dimensions: Vec<_> = view.dimensions.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(dimensions, ["ua", "b"]);
        let kinds: Vec<_> = view
            .aggregates
            .iter()
            .map(|a| (a.name.as_str(), a.kind))
            .collect();
        assert_eq!(
            kinds,
            [("s", StateKind::Sum), ("users", StateKind::CountDistinct)]
        );
        assert_eq!(
            view.columns,
            [
                ViewColumn::Aggregate(0),
                ViewColumn::Dimension(0),
                ViewColumn::Aggregate(1),
                ViewColumn::Dimension(1)
            ]
        );
    }

    #[tokio::test]
    async fn what_cannot_be_kept_is_refused_by_name() {
        for (query, expected) in [
            (
                "SELECT a, median(x) AS m FROM t GROUP BY a",
                "cannot keep median",
            ),
            (
                "SELECT a, array_agg(x) AS m FROM t GROUP BY a",
                "cannot keep array_agg",
            ),
            (
                "SELECT a, avg(DISTINCT x) AS m FROM t GROUP BY a",
                "cannot keep avg(...) with DISTINCT",
            ),
            (
                "SELECT a, sum(x) FILTER (WHERE b > 1) AS m FROM t GROUP BY a",
                "with a FILTER clause",
            ),
            (
                "SELECT a, sum(x) AS s FROM t GROUP BY a HAVING sum(x) > 0",
                "no HAVING",
            ),
            ("SELECT sum(x) AS s FROM t", "without GROUP BY"),
            ("SELECT sum(x) AS s FROM t GROUP BY a", "must be selected"),
            ("SELECT a FROM t GROUP BY a", "no aggregates"),
            (
                "SELECT t.a, sum(t.x) AS s FROM t JOIN u ON t.a = u.a GROUP BY t.a",
                "without joins",
            ),
            ("SELECT a, sum(x) AS a FROM t GROUP BY a", "ambiguous"),
            ("SELECT a, sum(x) AS s FROM t GROUP BY ROLLUP(a)", "ROLLUP"),
        ] {
            let err = plan(query).await.unwrap_err().to_string();
            assert!(err.contains(expected), "{query}: {err}");
        }
    }
}
