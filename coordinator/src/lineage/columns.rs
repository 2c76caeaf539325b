//! Column-level lineage of a logical plan: for every output column, the table columns it is
//! made from and how (copied, computed, aggregated). Resolved bottom-up by position, the
//! way `datafusion-openlineage` does it (that crate targets DataFusion 54, so it cannot take
//! our plans): each node maps its output columns to its inputs' columns by index in their
//! schemas, so aliases, self-joins and subqueries need no name matching. A node it does not
//! know passes on what it can find by name and gives no lineage for the rest, rather than
//! guess.

use std::collections::BTreeMap;

use datafusion::common::Column;
use datafusion::logical_expr::{Expr, LogicalPlan};

/// How an output column comes from an input column (OpenLineage's DIRECT subtypes), in
/// order: a column copied through only identities is IDENTITY; once aggregated, AGGREGATION.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Derivation {
    Identity,
    Transformation,
    Aggregation,
}

impl Derivation {
    pub(crate) fn subtype(self) -> &'static str {
        match self {
            Self::Identity => "IDENTITY",
            Self::Transformation => "TRANSFORMATION",
            Self::Aggregation => "AGGREGATION",
        }
    }
}

/// A column of a scanned table.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct SourceColumn {
    pub table: String,
    pub column: String,
}

/// The sources of one output column.
pub(crate) type Sources = BTreeMap<SourceColumn, Derivation>;

/// The sources of each output column of `plan`, in the order of its schema.
pub(crate) fn column_lineage(plan: &LogicalPlan) -> Vec<Sources> {
    let inputs: Vec<Vec<Sources>> = plan.inputs().into_iter().map(column_lineage).collect();
    let width = plan.schema().fields().len();
    match plan {
        LogicalPlan::TableScan(scan) => scan
            .projected_schema
            .fields()
            .iter()
            .map(|field| {
                Sources::from([(
                    SourceColumn {
                        table: scan.table_name.table().to_string(),
                        column: field.name().clone(),
                    },
                    Derivation::Identity,
                )])
            })
            .collect(),
        LogicalPlan::Projection(projection) => projection
            .expr
            .iter()
            .map(|expr| expression(expr, projection.input.as_ref(), &inputs[0], false))
            .collect(),
        LogicalPlan::Aggregate(aggregate) => {
            let input = aggregate.input.as_ref();
            let mut columns: Vec<Sources> = aggregate
                .group_expr
                .iter()
                .map(|expr| expression(expr, input, &inputs[0], false))
                .collect();
            columns.extend(
                aggregate
                    .aggr_expr
                    .iter()
                    .map(|expr| expression(expr, input, &inputs[0], true)),
            );
            // Grouping sets add an internal grouping id column.
            columns.resize(width, Sources::new());
            columns
        }
        LogicalPlan::Window(window) => {
            let mut columns = inputs[0].clone();
            columns.extend(
                window
                    .window_expr
                    .iter()
                    .map(|expr| expression(expr, window.input.as_ref(), &inputs[0], true)),
            );
            columns
        }
        LogicalPlan::Union(_) => (0..width)
            .map(|i| {
                let mut merged = Sources::new();
                for input in &inputs {
                    if let Some(sources) = input.get(i) {
                        merge(&mut merged, sources, Derivation::Identity);
                    }
                }
                merged
            })
            .collect(),
        LogicalPlan::Join(_) => {
            let (left, right) = (&inputs[0], &inputs[1]);
            if width == left.len() + right.len() {
                left.iter().chain(right).cloned().collect()
            } else if width == right.len() {
                right.clone()
            } else {
                // Left semi/anti joins, and a mark column after the left's columns.
                let mut columns = left.clone();
                columns.resize(width, Sources::new());
                columns
            }
        }
        // One input, the same columns in the same places.
        _ if inputs.len() == 1 && inputs[0].len() == width => inputs[0].clone(),
        _ => by_name(plan, &inputs),
    }
}

/// The sources of `expr` evaluated over `input` (whose columns have `sources`).
pub(super) fn expression(
    expr: &Expr,
    input: &LogicalPlan,
    sources: &[Sources],
    aggregate: bool,
) -> Sources {
    let mut unaliased = expr;
    while let Expr::Alias(alias) = unaliased {
        unaliased = alias.expr.as_ref();
    }
    let how = match unaliased {
        _ if aggregate => Derivation::Aggregation,
        Expr::Column(_) => Derivation::Identity,
        _ => Derivation::Transformation,
    };
    let mut found = Sources::new();
    for column in expr.column_refs() {
        if let Some(index) = input.schema().maybe_index_of_column(column) {
            merge(&mut found, &sources[index], how);
        }
    }
    found
}

/// Adds `sources`, each at least `how` far from its input, to `into`.
fn merge(into: &mut Sources, sources: &Sources, how: Derivation) {
    for (column, was) in sources {
        let now = (*was).max(how);
        into.entry(column.clone())
            .and_modify(|t| *t = (*t).max(now))
            .or_insert(now);
    }
}

/// For a node not handled above: each output column takes the sources of an input column
/// of the same name, or none.
fn by_name(plan: &LogicalPlan, inputs: &[Vec<Sources>]) -> Vec<Sources> {
    plan.schema()
        .columns()
        .iter()
        .map(|column: &Column| {
            plan.inputs()
                .iter()
                .zip(inputs)
                .find_map(|(input, sources)| {
                    input
                        .schema()
                        .columns()
                        .iter()
                        .position(|c| c.name == column.name)
                        .map(|i| sources[i].clone())
                })
                .unwrap_or_default()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::test_tables::optimized_plan;
    use super::*;

    async fn lineage(sql: &str) -> Vec<(String, Vec<(String, &'static str)>)> {
        let plan = optimized_plan(sql).await;
        let names: Vec<String> = plan
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        names
            .into_iter()
            .zip(column_lineage(&plan))
            .map(|(name, sources)| {
                let sources = sources
                    .into_iter()
                    .map(|(c, t)| (format!("{}.{}", c.table, c.column), t.subtype()))
                    .collect();
                (name, sources)
            })
            .collect()
    }

    #[tokio::test]
    async fn a_join_and_aggregation_trace_each_column_to_its_tables() {
        let got = lineage(
            "SELECT a.campaign AS campaign, upper(c.day) AS day, sum(c.clicks) AS clicks \
             FROM clicks c JOIN ads a ON c.ad = a.ad GROUP BY a.campaign, upper(c.day)",
        )
        .await;
        assert_eq!(
            got,
            vec![
                (
                    "campaign".to_string(),
                    vec![("ads.campaign".to_string(), "IDENTITY")]
                ),
                (
                    "day".to_string(),
                    vec![("clicks.day".to_string(), "TRANSFORMATION")]
                ),
                (
                    "clicks".to_string(),
                    vec![("clicks.clicks".to_string(), "AGGREGATION")]
                ),
            ]
        );
    }

    #[tokio::test]
    async fn unions_and_self_joins_keep_columns_apart() {
        let got = lineage(
            "SELECT x.clicks + y.clicks AS total FROM clicks x JOIN clicks y ON x.ad = y.ad \
             UNION ALL SELECT ad FROM ads",
        )
        .await;
        assert_eq!(
            got,
            vec![(
                "total".to_string(),
                vec![
                    ("ads.ad".to_string(), "IDENTITY"),
                    ("clicks.clicks".to_string(), "TRANSFORMATION"),
                ]
            )]
        );
    }
}
