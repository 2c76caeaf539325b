//! Compact distinct states. `COUNT(DISTINCT x)` and `SUM(DISTINCT x)` are where aggregation
//! bytes explode: DataFusion's `SingleDistinctToGroupBy` turns them into `GROUP BY g, x`,
//! which ships every distinct (group, value) pair, and its distinct accumulators ship a list
//! of values per group. This rule replaces each such aggregate, in its partial and final
//! aggregate alike, by a Tally aggregate whose partial state is one compact, exact value set
//! per group (`tally_common::distinct`): a roaring bitmap or delta-coded list for integer-like
//! values, a sorted front-coded set for other types. The final aggregate unions the sets.
//!
//! When the partial aggregate's input is hash partitioned on `x` alone (a table bucketed by
//! the distinct column), the values of different partitions are disjoint: the partial state
//! is then just the count of its set, and the final aggregate adds the counts up.
//!
//! Gate: a value set per group costs memory and a few bytes of header; when the input has
//! fewer than `tally.compact_distinct_min_rows_per_group` rows per estimated group (groups
//! bounded from statistics, see `planner::estimates`), the aggregate is left as DataFusion
//! planned it. Unknown group counts do not stop the rule.
//!
//! `APPROX_DISTINCT` keeps DataFusion's sketch and its answers; its HyperLogLog registers
//! travel re-encoded (sparse or 6-bit packed, see `tally_common::distinct`), often several
//! times smaller than the 16 KiB DataFusion ships per group and partition.
//!
//! For the rule to see `DISTINCT` aggregates at all, the job's session drops DataFusion's
//! `SingleDistinctToGroupBy` optimizer rule while this rule is on (`session.rs`).

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode, TreeNodeRecursion};
use datafusion::error::Result;
use datafusion::logical_expr::AggregateUDF;
use datafusion::physical_expr::aggregate::{AggregateExprBuilder, AggregateFunctionExpr};
use datafusion::physical_expr::{Partitioning, PhysicalExpr};
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties};
use tally_common::distinct::{
    APPROX_DISTINCT_NAME, DistinctKind, compact_approx_distinct_udaf, distinct_udaf, sketches,
};

use crate::planner::estimates::Estimate;

/// The name of DataFusion's optimizer rule that this rule replaces.
pub(crate) const SINGLE_DISTINCT_TO_GROUP_BY: &str = "single_distinct_aggregation_to_group_by";

/// Rewrites every partial/final aggregate pair with supported distinct aggregates.
pub(crate) fn compact_distinct_states(
    plan: Arc<dyn ExecutionPlan>,
    min_rows_per_group: f64,
) -> Result<Arc<dyn ExecutionPlan>> {
    plan.transform_up(|node| {
        let Some(aggregate) = node.downcast_ref::<AggregateExec>() else {
            return Ok(Transformed::no(node));
        };
        let rewritten = match aggregate.mode() {
            AggregateMode::Partial => compact_partial(aggregate, min_rows_per_group)?,
            AggregateMode::Final | AggregateMode::FinalPartitioned => matching_final(aggregate)?,
            _ => None,
        };
        Ok(match rewritten {
            Some(plan) => Transformed::yes(plan),
            None => Transformed::no(node),
        })
    })
    .data()
}

fn compact_partial(
    aggregate: &AggregateExec,
    min_rows_per_group: f64,
) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    if !aggregate.group_expr().is_single() {
        return Ok(None);
    }
    let input = aggregate.input();
    let schema = aggregate.input_schema();
    // Values hash partitioned on one expression are disjoint between partitions.
    let disjoint_on = match input.output_partitioning() {
        Partitioning::Hash(exprs, _) if exprs.len() == 1 => Some(exprs[0].to_string()),
        _ => None,
    };
    let mut changed = false;
    let mut exprs = Vec::with_capacity(aggregate.aggr_expr().len());
    for expr in aggregate.aggr_expr() {
        match replacement(expr, &schema, disjoint_on.as_deref()) {
            Some((udaf, name)) => {
                changed = true;
                exprs.push(Arc::new(tally_expr(expr, udaf, name, &schema)?));
            }
            None => exprs.push(expr.clone()),
        }
    }
    if !changed || !pays(aggregate, min_rows_per_group) {
        return Ok(None);
    }
    rebuild(aggregate, exprs, input.clone()).map(Some)
}

/// Which Tally aggregate replaces `expr`, if any: a distinct aggregate, or
/// `approx_distinct` of a type DataFusion sketches.
fn replacement(
    expr: &AggregateFunctionExpr,
    schema: &SchemaRef,
    disjoint_on: Option<&str>,
) -> Option<(Arc<AggregateUDF>, &'static str)> {
    if !expr.order_bys().is_empty() || expr.ignore_nulls() {
        return None;
    }
    let [arg]: [Arc<dyn PhysicalExpr>; 1] = expr.expressions().try_into().ok()?;
    let input_type = arg.data_type(schema).ok()?;
    if !expr.is_distinct() {
        return (expr.fun().name() == "approx_distinct" && sketches(&input_type))
            .then(|| (compact_approx_distinct_udaf(), APPROX_DISTINCT_NAME));
    }
    let kind = match expr.fun().name() {
        "count" if disjoint_on == Some(arg.to_string().as_str()) => DistinctKind::CountDisjoint,
        "count" => DistinctKind::Count,
        "sum" => DistinctKind::Sum,
        _ => return None,
    };
    kind.supports(&input_type)
        .then(|| (distinct_udaf(kind), kind.name()))
}

/// The Tally aggregate `udaf` for `expr`: same arguments and output name, shown by what it
/// is.
fn tally_expr(
    expr: &AggregateFunctionExpr,
    udaf: Arc<AggregateUDF>,
    name: &str,
    schema: &SchemaRef,
) -> Result<AggregateFunctionExpr> {
    let args = expr.expressions();
    let shown = format!(
        "{name}({})",
        args.iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    AggregateExprBuilder::new(udaf, args)
        .schema(schema.clone())
        .alias(expr.name())
        .human_display(shown)
        .human_display_alias(expr.name())
        .build()
}

/// Whether the input has enough rows per estimated group for value sets to pay.
fn pays(aggregate: &AggregateExec, min_rows_per_group: f64) -> bool {
    let estimate = Estimate::of(aggregate.input());
    let keys: Vec<_> = aggregate
        .group_expr()
        .expr()
        .iter()
        .map(|(expr, _)| expr.clone())
        .collect();
    match (estimate.rows(), estimate.groups(&keys)) {
        (Some(rows), Some(groups)) => rows >= groups * min_rows_per_group,
        _ => true,
    }
}

/// The final aggregate of a rewritten partial takes the partial's aggregate expressions.
fn matching_final(aggregate: &AggregateExec) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    let Some(partial) = partial_below(aggregate.input()) else {
        return Ok(None);
    };
    let ours = |e: &Arc<AggregateFunctionExpr>| is_tally_distinct(e);
    let same_names = partial.aggr_expr().len() == aggregate.aggr_expr().len()
        && partial
            .aggr_expr()
            .iter()
            .zip(aggregate.aggr_expr())
            .all(|(p, f)| p.name() == f.name());
    let differs = partial
        .aggr_expr()
        .iter()
        .zip(aggregate.aggr_expr())
        .any(|(p, f)| ours(p) && !ours(f));
    if !same_names || !differs {
        return Ok(None);
    }
    rebuild(
        aggregate,
        partial.aggr_expr().to_vec(),
        aggregate.input().clone(),
    )
    .map(Some)
}

/// The partial aggregate feeding a final one through its exchange.
fn partial_below(plan: &Arc<dyn ExecutionPlan>) -> Option<&AggregateExec> {
    let mut node = plan;
    loop {
        if let Some(aggregate) = node.downcast_ref::<AggregateExec>() {
            return (*aggregate.mode() == AggregateMode::Partial).then_some(aggregate);
        }
        let [child] = node.children()[..] else {
            return None;
        };
        node = child;
    }
}

pub(crate) fn is_tally_distinct(expr: &AggregateFunctionExpr) -> bool {
    let name = expr.fun().name();
    name == APPROX_DISTINCT_NAME || DistinctKind::ALL.iter().any(|kind| kind.name() == name)
}

fn rebuild(
    aggregate: &AggregateExec,
    exprs: Vec<Arc<AggregateFunctionExpr>>,
    input: Arc<dyn ExecutionPlan>,
) -> Result<Arc<dyn ExecutionPlan>> {
    let rebuilt = AggregateExec::try_new(
        *aggregate.mode(),
        aggregate.group_expr().clone(),
        exprs,
        aggregate.filter_expr().to_vec(),
        input,
        aggregate.input_schema(),
    )?
    .with_limit_options(aggregate.limit_options());
    Ok(Arc::new(rebuilt))
}

/// What EXPLAIN notes on a stage whose plan holds `plan`'s aggregates.
pub(crate) fn stage_notes(plan: &Arc<dyn ExecutionPlan>) -> Vec<String> {
    let mut notes: Vec<String> = Vec::new();
    plan.apply(|node| {
        let Some(aggregate) = node.downcast_ref::<AggregateExec>() else {
            return Ok(TreeNodeRecursion::Continue);
        };
        if *aggregate.mode() != AggregateMode::Partial {
            return Ok(TreeNodeRecursion::Continue);
        }
        for expr in aggregate.aggr_expr() {
            let note = match expr.fun().name() {
                n if n == DistinctKind::CountDisjoint.name() => "bucketed_distinct",
                n if n == DistinctKind::Count.name() || n == DistinctKind::Sum.name() => {
                    "compact_distinct"
                }
                APPROX_DISTINCT_NAME => "compact_sketch",
                _ => continue,
            };
            if !notes.iter().any(|n| n == note) {
                notes.push(note.to_string());
            }
        }
        Ok(TreeNodeRecursion::Continue)
    })
    .expect("the walk cannot fail");
    notes
}

#[cfg(test)]
mod tests {
    use crate::planner::test_support::Tables;

    /// `t(g, x, s, v)`: 4,000 rows over 4 parquet files; 7 groups, 600 integer values (with
    /// NULLs and negatives), 40 strings.
    async fn tables() -> Tables {
        Tables::new(
            &[(
                "t",
                "SELECT value % 7 AS g, \
                   CASE WHEN value % 10 = 0 THEN NULL ELSE (value * 7919) % 600 - 300 END AS x, \
                   'user-' || (value % 40) AS s, value AS v \
                 FROM generate_series({lo}, {hi})",
            )],
            4,
            1000,
        )
        .await
    }

    #[tokio::test]
    async fn distinct_aggregates_get_compact_states_and_the_same_answers() {
        let t = tables().await;
        for sql in [
            "SELECT g, count(DISTINCT x) AS c FROM t GROUP BY g ORDER BY g",
            "SELECT g, count(DISTINCT x) AS c, sum(DISTINCT x) AS sx, count(DISTINCT s) AS cs, \
             sum(v) AS total, count(*) AS n FROM t GROUP BY g ORDER BY g",
            "SELECT count(DISTINCT x) AS c, count(DISTINCT s) AS cs FROM t",
            "SELECT count(DISTINCT x) AS c, sum(DISTINCT x) AS s FROM t WHERE v % 5000 = 4999",
            "SELECT s, count(DISTINCT x) FILTER (WHERE v % 2 = 0) AS c FROM t GROUP BY s ORDER BY s",
        ] {
            let (compact, answer) = t.run(sql, &[]).await;
            let (plain, expected) = t.run(sql, &[("tally.compact_distinct", "false")]).await;
            assert!(
                compact.contains("tally_count_distinct("),
                "{sql}\n{compact}"
            );
            assert!(!plain.contains("tally_"), "{sql}\n{plain}");
            assert_eq!(answer, expected, "{sql}");
        }
    }

    #[tokio::test]
    async fn approx_distinct_keeps_its_estimates_with_compact_sketches() {
        let t = tables().await;
        let sql = "SELECT g, approx_distinct(x) AS a, approx_distinct(s) AS b, \
                   approx_distinct(g % 2 = 0) AS c FROM t GROUP BY g ORDER BY g";
        let (compact, answer) = t.run(sql, &[]).await;
        let (_, expected) = t.run(sql, &[("tally.compact_distinct", "false")]).await;
        assert_eq!(
            compact.matches("tally_approx_distinct(").count(),
            4,
            "{compact}"
        );
        assert_eq!(answer, expected);
    }

    #[tokio::test]
    async fn input_partitioned_on_the_distinct_column_ships_counts() {
        let t = tables().await;
        // The inner aggregation leaves its output hash partitioned on x alone.
        let sql = "SELECT g, count(DISTINCT x) AS c FROM \
                   (SELECT x, min(g) AS g FROM t GROUP BY x) GROUP BY g ORDER BY g";
        let (plan, answer) = t.run(sql, &[]).await;
        let (_, expected) = t.run(sql, &[("tally.compact_distinct", "false")]).await;
        assert!(plan.contains("tally_count_distinct_disjoint("), "{plan}");
        assert_eq!(answer, expected);
    }

    #[tokio::test]
    async fn about_one_row_per_group_keeps_datafusion_plan() {
        let t = tables().await;
        // v is unique: its min..max range says 4,000 groups for 4,000 rows.
        let sql = "SELECT v, count(DISTINCT x) AS c FROM t GROUP BY v ORDER BY v LIMIT 5";
        let (plan, answer) = t.run(sql, &[]).await;
        let (_, expected) = t.run(sql, &[("tally.compact_distinct", "false")]).await;
        assert!(!plan.contains("tally_"), "{plan}");
        assert_eq!(answer, expected);
        let (plan, _) = t
            .run(sql, &[("tally.compact_distinct_min_rows_per_group", "0")])
            .await;
        assert!(plan.contains("tally_count_distinct("), "{plan}");
    }

    #[tokio::test]
    async fn naive_planner_keeps_datafusion_distinct_plan() {
        let t = tables().await;
        let sql = "SELECT g, count(DISTINCT x) AS c FROM t GROUP BY g ORDER BY g";
        let (plan, _) = t.run(sql, &[("tally.planner", "naive")]).await;
        assert!(!plan.contains("tally_"), "{plan}");
    }
}
