//! Indirect lineage: the table columns that decide which rows a query's output holds without
//! being copied into it (OpenLineage's INDIRECT transformations): filters, join keys,
//! grouping keys and sort keys. Each is resolved to its table columns by the same positional
//! lineage as the output columns (`columns.rs`).

use std::collections::{BTreeMap, BTreeSet};

use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::logical_expr::{Expr, LogicalPlan};

use super::columns::{Derivation, SourceColumn, Sources, column_lineage, expression};

/// How a column shapes the output's rows (OpenLineage's INDIRECT subtypes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Indirect {
    Filter,
    Join,
    GroupBy,
    Sort,
}

impl Indirect {
    pub(crate) fn subtype(self) -> &'static str {
        match self {
            Self::Filter => "FILTER",
            Self::Join => "JOIN",
            Self::GroupBy => "GROUP_BY",
            Self::Sort => "SORT",
        }
    }
}

/// Each table column that shapes the rows of `plan`'s output, with how.
pub(crate) type IndirectSources = BTreeMap<SourceColumn, BTreeSet<Indirect>>;

/// The indirect lineage of `plan` (subqueries included).
pub(crate) fn indirect_lineage(plan: &LogicalPlan) -> IndirectSources {
    let mut found = IndirectSources::new();
    let _ = plan.apply_with_subqueries(|node| {
        for (how, columns) in shaping(node) {
            for column in columns.into_keys() {
                found.entry(column).or_default().insert(how);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found
}

/// What one node filters, joins, groups or sorts on, as table columns.
fn shaping(node: &LogicalPlan) -> Vec<(Indirect, Sources)> {
    let over = |input: &LogicalPlan, exprs: &mut dyn Iterator<Item = &Expr>| {
        let lineage = column_lineage(input);
        let mut sources = Sources::new();
        for expr in exprs {
            sources.extend(expression(expr, input, &lineage, false));
        }
        sources
    };
    match node {
        LogicalPlan::Filter(filter) => vec![(
            Indirect::Filter,
            over(&filter.input, &mut std::iter::once(&filter.predicate)),
        )],
        LogicalPlan::Join(join) => {
            let mut keys = over(&join.left, &mut join.on.iter().map(|(l, _)| l));
            keys.extend(over(&join.right, &mut join.on.iter().map(|(_, r)| r)));
            // A join filter may name columns of either side.
            if let Some(filter) = &join.filter {
                keys.extend(over(&join.left, &mut std::iter::once(filter)));
                keys.extend(over(&join.right, &mut std::iter::once(filter)));
            }
            vec![(Indirect::Join, keys)]
        }
        LogicalPlan::Aggregate(aggregate) if !aggregate.group_expr.is_empty() => vec![(
            Indirect::GroupBy,
            over(&aggregate.input, &mut aggregate.group_expr.iter()),
        )],
        LogicalPlan::Sort(sort) => vec![(
            Indirect::Sort,
            over(&sort.input, &mut sort.expr.iter().map(|s| &s.expr)),
        )],
        // Filters pushed into a scan name the table's own columns.
        LogicalPlan::TableScan(scan) if !scan.filters.is_empty() => {
            let table = scan.table_name.table().to_string();
            let mut sources = Sources::new();
            for filter in &scan.filters {
                for column in filter.column_refs() {
                    sources.insert(
                        SourceColumn {
                            table: table.clone(),
                            column: column.name.clone(),
                        },
                        Derivation::Identity,
                    );
                }
            }
            vec![(Indirect::Filter, sources)]
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_tables::optimized_plan;
    use super::*;

    #[tokio::test]
    async fn filters_join_keys_grouping_and_sorting_are_indirect_sources() {
        let plan = optimized_plan(
            "SELECT a.campaign, sum(c.clicks) AS clicks FROM clicks c JOIN ads a ON c.ad = a.ad \
                 WHERE c.country = 'DE' GROUP BY a.campaign ORDER BY clicks DESC",
        )
        .await;
        let got: Vec<(String, Vec<&str>)> = indirect_lineage(&plan)
            .into_iter()
            .map(|(c, how)| {
                (
                    format!("{}.{}", c.table, c.column),
                    how.into_iter().map(Indirect::subtype).collect(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("ads.ad".to_string(), vec!["JOIN"]),
                ("ads.campaign".to_string(), vec!["GROUP_BY"]),
                ("clicks.ad".to_string(), vec!["JOIN"]),
                ("clicks.clicks".to_string(), vec!["SORT"]),
                ("clicks.country".to_string(), vec!["FILTER"]),
            ]
        );
    }
}
