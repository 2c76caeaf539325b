//! Eager aggregation (Yan & Larson, "Eager Aggregation and Lazy Aggregation", VLDB 1995): a
//! partial aggregate pushed below a join, so the join and the exchange that feeds it carry
//! partial states instead of rows.
//!
//! The rewrite, for `Partial(G; A) over [projections] over J = Join(S, O)`:
//!
//! ```text
//! PartialReduce(G; A)                      -- merges the states by the original groups
//!                                          -- (Final when the aggregate was single-phase)
//!   Projection [G as before, states]
//!     Join(Partial(G_S; A) over S, O)      -- the exchange feeding S now carries states
//! ```
//!
//! where `S` is the join input holding every column the aggregates read and `G_S` is every
//! column of `S` that is needed after the partial aggregation: the columns of `S` that `G`
//! uses, `S`'s join keys, and the columns of `S` in the join's extra (non-equi) filter.
//!
//! It is correct when all of these hold, and the rule checks each one:
//! 1. `J` is an inner hash join, or a semi or anti join (not the null-aware `NOT IN` form)
//!    whose preserved side is `S`, without a row limit of its own. Outer joins would add
//!    NULL-padded rows or lose them.
//! 2. Every aggregate argument reads only columns of `S`. Rows of `S` that agree on `G_S`
//!    meet exactly the same rows of `O` (the join and its filter only look at `G_S`), so the
//!    join output for such a group of `n` rows is `n` copies of each matching `O` row; a
//!    partial state over those `n` rows, merged once per matching `O` row, equals the state of
//!    the original rows. An aggregate over `O`'s columns would see each `O` row once instead
//!    of `n` times (Yan & Larson's "eager count" would fix SUM/COUNT by multiplying, which
//!    is not done here): the rule does not fire.
//! 3. Every aggregate is decomposable into mergeable partial states and insensitive to input
//!    order and duplication of whole groups: `sum`, `count`, `min`, `max`, `avg`, `bool_and`,
//!    `bool_or`, `bit_and`, `bit_or`, `bit_xor`, without DISTINCT, ORDER BY inside the
//!    aggregate, or a FILTER clause. Their states merge exactly (`PartialReduce` is
//!    DataFusion's own merge of partial states, the worker-level combine uses it too).
//! 4. No grouping sets, and no volatile expression in the groups or arguments (`random()`
//!    evaluated below the join would be evaluated once per `S` row instead of once per
//!    joined row).
//! 5. Only projections lie between the partial aggregate and the join; `S`'s join keys and
//!    the hash keys of its exchange are plain columns.
//!
//! The rule recurses: the pushed partial aggregate may itself sit on a join, and goes on down
//! (through `Q18`'s semi join into the inner join below it, for example); intermediate
//! levels become `PartialReduce`s, which never emit more rows than they read.
//!
//! Gate: the rows of the deepest input the partial lands on, divided by its estimated groups,
//! must reach `tally.eager_aggregation_min_reduction`. Groups come from
//! `planner::estimates`; a join key is assumed to take at most as many values as the other
//! side's key (the containment assumption of join size estimates, true of foreign keys).
//! Unknown groups mean no reduction is claimed.

use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode, TreeNodeRecursion};
use datafusion::common::{JoinSide, JoinType};
use datafusion::error::Result;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::{Partitioning, PhysicalExpr};
use datafusion::physical_expr_common::physical_expr::is_volatile;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode, PhysicalGroupBy};
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::joins::utils::{ColumnIndex, JoinFilter};
use datafusion::physical_plan::joins::{HashJoinExec, HashJoinExecBuilder};
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::repartition::RepartitionExec;

use crate::planner::estimates::Estimate;

/// Aggregates whose partial states merge exactly whatever rows are grouped together first.
const DECOMPOSABLE: [&str; 10] = [
    "sum", "count", "min", "max", "avg", "bool_and", "bool_or", "bit_and", "bit_or", "bit_xor",
];

/// Pushes partial aggregates below joins where correct and estimated to pay.
pub(crate) fn push_aggregates_below_joins(
    plan: Arc<dyn ExecutionPlan>,
    min_reduction: f64,
) -> Result<Arc<dyn ExecutionPlan>> {
    plan.transform_up(|node| {
        let Some(partial) = node.downcast_ref::<AggregateExec>() else {
            return Ok(Transformed::no(node));
        };
        Ok(match eager(partial)? {
            Some(pushed) if pushed.reduction >= min_reduction => Transformed::yes(pushed.plan),
            _ => Transformed::no(node),
        })
    })
    .data()
}

/// A rewritten subtree and the reduction estimated where its deepest partial aggregate landed.
struct Pushed {
    plan: Arc<dyn ExecutionPlan>,
    reduction: f64,
}

/// The partial aggregate's expressions, carried down through projections to the join.
struct Exprs {
    groups: Vec<Arc<dyn PhysicalExpr>>,
    args: Vec<Vec<Arc<dyn PhysicalExpr>>>,
}

/// The mode that merges the pushed partial states where an aggregate of `mode` was: a
/// partial aggregate still emits states, a single-phase one finishes them.
fn merging_mode(mode: AggregateMode) -> Option<AggregateMode> {
    match mode {
        AggregateMode::Partial => Some(AggregateMode::PartialReduce),
        AggregateMode::Single => Some(AggregateMode::Final),
        AggregateMode::SinglePartitioned => Some(AggregateMode::FinalPartitioned),
        _ => None,
    }
}

fn eager(partial: &AggregateExec) -> Result<Option<Pushed>> {
    if merging_mode(*partial.mode()).is_none()
        || !partial.group_expr().is_single()
        || partial.filter_expr().iter().any(Option::is_some)
        || !partial.aggr_expr().iter().all(|e| {
            DECOMPOSABLE.contains(&e.fun().name()) && !e.is_distinct() && e.order_bys().is_empty()
        })
    {
        return Ok(None);
    }
    let mut exprs = Exprs {
        groups: partial
            .group_expr()
            .expr()
            .iter()
            .map(|(e, _)| e.clone())
            .collect(),
        args: partial
            .aggr_expr()
            .iter()
            .map(|e| e.expressions())
            .collect(),
    };
    if exprs.all().any(is_volatile) {
        return Ok(None);
    }
    let mut node = partial.input().clone();
    while let Some(projection) = node.downcast_ref::<ProjectionExec>() {
        let through = |e: &Arc<dyn PhysicalExpr>| -> Result<Arc<dyn PhysicalExpr>> {
            e.clone()
                .transform_up(|e| {
                    Ok(match e.downcast_ref::<Column>() {
                        Some(c) => Transformed::yes(projection.expr()[c.index()].expr.clone()),
                        None => Transformed::no(e),
                    })
                })
                .data()
        };
        exprs = Exprs {
            groups: exprs.groups.iter().map(through).collect::<Result<_>>()?,
            args: exprs
                .args
                .iter()
                .map(|a| a.iter().map(through).collect::<Result<_>>())
                .collect::<Result<_>>()?,
        };
        node = projection.input().clone();
    }
    let Some(join) = node.downcast_ref::<HashJoinExec>() else {
        return Ok(None);
    };
    let Some(layout) = JoinLayout::of(join) else {
        return Ok(None);
    };
    let Some(side) = layout.pushed_side(join, &exprs) else {
        return Ok(None);
    };
    push_below(partial, join, &layout, side, &exprs)
}

impl Exprs {
    fn all(&self) -> impl Iterator<Item = &Arc<dyn PhysicalExpr>> {
        self.groups.iter().chain(self.args.iter().flatten())
    }
}

/// Where each output column of a join comes from.
struct JoinLayout {
    /// Per output column: its input side and index there.
    origins: Vec<(JoinSide, usize)>,
}

impl JoinLayout {
    fn of(join: &HashJoinExec) -> Option<Self> {
        // A join that stops after `fetch` rows decides which rows the aggregate sees.
        if join.null_aware || join.fetch().is_some() {
            return None;
        }
        let left_len = join.left().schema().fields().len();
        let right_len = join.right().schema().fields().len();
        let unprojected: Vec<(JoinSide, usize)> = match join.join_type() {
            JoinType::Inner => (0..left_len)
                .map(|i| (JoinSide::Left, i))
                .chain((0..right_len).map(|i| (JoinSide::Right, i)))
                .collect(),
            JoinType::LeftSemi | JoinType::LeftAnti => {
                (0..left_len).map(|i| (JoinSide::Left, i)).collect()
            }
            JoinType::RightSemi | JoinType::RightAnti => {
                (0..right_len).map(|i| (JoinSide::Right, i)).collect()
            }
            _ => return None,
        };
        let origins = match &join.projection {
            Some(projection) => projection.iter().map(|&i| unprojected[i]).collect(),
            None => unprojected,
        };
        Some(Self { origins })
    }

    /// Columns of the join output an expression reads.
    fn columns(expr: &Arc<dyn PhysicalExpr>) -> Vec<usize> {
        let mut columns = Vec::new();
        expr.apply(|e| {
            if let Some(c) = e.downcast_ref::<Column>() {
                columns.push(c.index());
            }
            Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
        })
        .expect("collecting columns cannot fail");
        columns
    }

    /// The side the partial aggregate goes to: the one every aggregate argument reads (the
    /// preserved side of a semi or anti join; the larger side when no argument reads any).
    fn pushed_side(&self, join: &HashJoinExec, exprs: &Exprs) -> Option<JoinSide> {
        let sides: Vec<JoinSide> = exprs
            .args
            .iter()
            .flatten()
            .flat_map(Self::columns)
            .map(|c| self.origins[c].0)
            .collect();
        let preserved = match join.join_type() {
            JoinType::LeftSemi | JoinType::LeftAnti => Some(JoinSide::Left),
            JoinType::RightSemi | JoinType::RightAnti => Some(JoinSide::Right),
            _ => None,
        };
        let side = match (sides.first(), preserved) {
            (_, Some(side)) => side,
            (Some(side), None) => *side,
            (None, None) => {
                let rows = |p: &Arc<dyn ExecutionPlan>| Estimate::of(p).rows().unwrap_or(0.0);
                if rows(join.left()) >= rows(join.right()) {
                    JoinSide::Left
                } else {
                    JoinSide::Right
                }
            }
        };
        sides.iter().all(|s| *s == side).then_some(side)
    }
}

fn child(join: &HashJoinExec, side: JoinSide) -> &Arc<dyn ExecutionPlan> {
    match side {
        JoinSide::Left => join.left(),
        _ => join.right(),
    }
}

fn other(side: JoinSide) -> JoinSide {
    match side {
        JoinSide::Left => JoinSide::Right,
        _ => JoinSide::Left,
    }
}

/// The exchange between a join and its input, kept above the pushed partial aggregate.
enum Exchange {
    Hash(Vec<Arc<dyn PhysicalExpr>>, usize),
    Gather,
    None,
}

fn push_below(
    partial: &AggregateExec,
    join: &HashJoinExec,
    layout: &JoinLayout,
    side: JoinSide,
    exprs: &Exprs,
) -> Result<Option<Pushed>> {
    let side_child = child(join, side);
    let (input, exchange) = if let Some(repartition) = side_child.downcast_ref::<RepartitionExec>()
    {
        match repartition.partitioning() {
            Partitioning::Hash(keys, count) if !repartition.preserve_order() => (
                repartition.input().clone(),
                Exchange::Hash(keys.clone(), *count),
            ),
            _ => return Ok(None),
        }
    } else if let Some(coalesce) = side_child.downcast_ref::<CoalescePartitionsExec>() {
        (coalesce.input().clone(), Exchange::Gather)
    } else {
        (side_child.clone(), Exchange::None)
    };
    let input_schema = input.schema();

    // The columns of the side the aggregate keeps: group columns, join keys, filter columns.
    let side_keys: Vec<&Arc<dyn PhysicalExpr>> = join
        .on()
        .iter()
        .map(|(l, r)| if side == JoinSide::Left { l } else { r })
        .collect();
    let mut kept: Vec<usize> = Vec::new();
    for key in &side_keys {
        let Some(column) = key.downcast_ref::<Column>() else {
            return Ok(None);
        };
        kept.push(column.index());
    }
    for group in &exprs.groups {
        for column in JoinLayout::columns(group) {
            let (from, index) = layout.origins[column];
            if from == side {
                kept.push(index);
            }
        }
    }
    if let Some(filter) = join.filter() {
        kept.extend(
            filter
                .column_indices()
                .iter()
                .filter(|c| c.side == side)
                .map(|c| c.index),
        );
    }
    kept.sort_unstable();
    kept.dedup();
    let position = |index: usize| kept.iter().position(|k| *k == index);

    // The partial aggregate on the side's input.
    let group_by = PhysicalGroupBy::new_single(
        kept.iter()
            .map(|&i| {
                let name = input_schema.field(i).name().clone();
                (
                    Arc::new(Column::new(&name, i)) as Arc<dyn PhysicalExpr>,
                    name,
                )
            })
            .collect(),
    );
    let to_side = |e: &Arc<dyn PhysicalExpr>| -> Result<Arc<dyn PhysicalExpr>> {
        e.clone()
            .transform_up(|e| {
                Ok(match e.downcast_ref::<Column>() {
                    Some(c) => {
                        let index = layout.origins[c.index()].1;
                        Transformed::yes(Arc::new(Column::new(
                            input_schema.field(index).name(),
                            index,
                        )) as Arc<dyn PhysicalExpr>)
                    }
                    None => Transformed::no(e),
                })
            })
            .data()
    };
    let mut aggregates = Vec::new();
    for (aggregate, args) in partial.aggr_expr().iter().zip(&exprs.args) {
        let args = args.iter().map(to_side).collect::<Result<Vec<_>>>()?;
        let Some(rebound) = aggregate.with_new_expressions(args, vec![]) else {
            return Ok(None);
        };
        aggregates.push(Arc::new(rebound));
    }
    let pushed = AggregateExec::try_new(
        AggregateMode::Partial,
        group_by,
        aggregates.clone(),
        vec![None; aggregates.len()],
        input.clone(),
        input_schema.clone(),
    )?;
    let own_reduction = reduction(&input, &kept, &side_keys, join, side);
    let (pushed, reduction): (Arc<dyn ExecutionPlan>, f64) = match eager(&pushed)? {
        Some(deeper) if deeper.reduction >= own_reduction => (deeper.plan, deeper.reduction),
        _ => (Arc::new(pushed), own_reduction),
    };
    let states = pushed.schema().fields().len() - kept.len();

    // The exchange again, over the partial states.
    let rebind = |key: &Arc<dyn PhysicalExpr>| -> Option<Arc<dyn PhysicalExpr>> {
        let column = key.downcast_ref::<Column>()?;
        let at = position(column.index())?;
        Some(Arc::new(Column::new(column.name(), at)))
    };
    let side_child: Arc<dyn ExecutionPlan> = match exchange {
        Exchange::Hash(keys, count) => {
            let Some(keys) = keys.iter().map(rebind).collect::<Option<Vec<_>>>() else {
                return Ok(None);
            };
            Arc::new(RepartitionExec::try_new(
                pushed,
                Partitioning::Hash(keys, count),
            )?)
        }
        Exchange::Gather => Arc::new(CoalescePartitionsExec::new(pushed)),
        Exchange::None => pushed,
    };

    // The join over the new input, unprojected.
    let mut on = Vec::new();
    for (l, r) in join.on() {
        on.push(if side == JoinSide::Left {
            (rebind(l).expect("keys are kept columns"), r.clone())
        } else {
            (l.clone(), rebind(r).expect("keys are kept columns"))
        });
    }
    let filter = join.filter().map(|f| {
        JoinFilter::new(
            f.expression().clone(),
            f.column_indices()
                .iter()
                .map(|c| ColumnIndex {
                    index: if c.side == side {
                        position(c.index).expect("filter columns are kept")
                    } else {
                        c.index
                    },
                    side: c.side,
                })
                .collect(),
            f.schema().clone(),
        )
    });
    let (left, right) = match side {
        JoinSide::Left => (side_child, join.right().clone()),
        _ => (join.left().clone(), side_child),
    };
    let left_len = left.schema().fields().len();
    let new_join = HashJoinExecBuilder::new(left, right, on, *join.join_type())
        .with_filter(filter)
        .with_partition_mode(*join.partition_mode())
        .with_null_equality(join.null_equality())
        .build_exec()?;

    // Where a column of the old join output, or a state, is in the new join output.
    let offset = |from: JoinSide| match (join.join_type(), from) {
        (JoinType::Inner, JoinSide::Right) => left_len,
        _ => 0,
    };
    let new_schema = new_join.schema();
    let relocate = |e: &Arc<dyn PhysicalExpr>| -> Result<Arc<dyn PhysicalExpr>> {
        e.clone()
            .transform_up(|e| {
                Ok(match e.downcast_ref::<Column>() {
                    Some(c) => {
                        let (from, index) = layout.origins[c.index()];
                        let at = offset(from)
                            + if from == side {
                                position(index).expect("group columns are kept")
                            } else {
                                index
                            };
                        Transformed::yes(Arc::new(Column::new(new_schema.field(at).name(), at))
                            as Arc<dyn PhysicalExpr>)
                    }
                    None => Transformed::no(e),
                })
            })
            .data()
    };
    let mut projection: Vec<(Arc<dyn PhysicalExpr>, String)> = Vec::new();
    for (group, (_, name)) in exprs.groups.iter().zip(partial.group_expr().expr()) {
        projection.push((relocate(group)?, name.clone()));
    }
    for state in 0..states {
        let at = offset(side) + kept.len() + state;
        let name = new_schema.field(at).name().clone();
        projection.push((Arc::new(Column::new(&name, at)), name));
    }
    let projected = Arc::new(ProjectionExec::try_new(projection, new_join)?);
    let merged = AggregateExec::try_new(
        merging_mode(*partial.mode()).expect("checked in eager"),
        partial.group_expr().as_final(),
        partial.aggr_expr().to_vec(),
        vec![None; partial.aggr_expr().len()],
        projected,
        partial.input_schema(),
    )?;
    Ok(Some(Pushed {
        plan: Arc::new(merged),
        reduction,
    }))
}

/// Rows of `input` per estimated group of its `kept` columns; 1.0 when groups are unknown.
fn reduction(
    input: &Arc<dyn ExecutionPlan>,
    kept: &[usize],
    side_keys: &[&Arc<dyn PhysicalExpr>],
    join: &HashJoinExec,
    side: JoinSide,
) -> f64 {
    let estimate = Estimate::of(input);
    let other_side = child(join, other(side));
    let other_estimate = Estimate::of(other_side);
    let Some(rows) = estimate.rows() else {
        return 1.0;
    };
    let mut groups = 1.0f64;
    for &index in kept {
        let column: Arc<dyn PhysicalExpr> =
            Arc::new(Column::new(input.schema().field(index).name(), index));
        let own = estimate.distinct_values(&column);
        // A join key takes at most as many values as the other side's key.
        let partner = side_keys
            .iter()
            .position(|k| {
                k.downcast_ref::<Column>()
                    .is_some_and(|c| c.index() == index)
            })
            .and_then(|key| {
                let (l, r) = &join.on()[key];
                let other_key = if side == JoinSide::Left { r } else { l };
                other_estimate
                    .distinct_values(other_key)
                    .or_else(|| other_estimate.rows())
            });
        let values = match (own, partner) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => return 1.0,
        };
        groups *= values.max(1.0);
    }
    rows / groups.min(rows).max(1.0)
}

/// What EXPLAIN notes on a stage whose plan merges partial states above a join.
pub(crate) fn stage_notes(plan: &Arc<dyn ExecutionPlan>) -> Vec<String> {
    let mut merges_above_a_join = false;
    plan.apply(|node| {
        if let Some(aggregate) = node.downcast_ref::<AggregateExec>()
            && matches!(
                aggregate.mode(),
                AggregateMode::PartialReduce
                    | AggregateMode::Final
                    | AggregateMode::FinalPartitioned
            )
        {
            let mut below = aggregate.input().clone();
            while let Some(projection) = below.downcast_ref::<ProjectionExec>() {
                below = projection.input().clone();
            }
            if below.is::<HashJoinExec>() {
                merges_above_a_join = true;
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    })
    .expect("the walk cannot fail");
    if merges_above_a_join {
        vec!["eager_aggregation".to_string()]
    } else {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use crate::planner::test_support::Tables;

    /// orders: 300 keys; lineitem: 4 lines per order; priorities: 5 rows.
    async fn tables() -> Tables {
        Tables::new(
            &[
                (
                    "orders",
                    "SELECT value AS o_orderkey, 'p' || (value % 5) AS o_priority, \
                     value % 3 AS o_flag FROM generate_series({lo} / 4 + 1, {hi} / 4)",
                ),
                (
                    "lineitem",
                    "SELECT (value + 3) / 4 AS l_orderkey, value % 50 AS l_qty, \
                     'm' || (value % 7) AS l_mode FROM generate_series({lo}, {hi})",
                ),
                (
                    "priorities",
                    "SELECT 'p' || value AS p_name, 10 - value AS p_rank \
                     FROM generate_series(0, 4) WHERE {lo} = 1 OR {hi} < 0",
                ),
            ],
            3,
            400,
        )
        .await
    }

    /// How many aggregates in `plan` merge partial states straight from a join.
    fn eager_merges(plan: &str) -> usize {
        let lines: Vec<&str> = plan.lines().map(str::trim).collect();
        lines
            .windows(3)
            .filter(|w| {
                w[0].starts_with("AggregateExec: mode=")
                    && !w[0].starts_with("AggregateExec: mode=Partial,")
                    && !w[0].starts_with("AggregateExec: mode=Single")
                    && w[1].starts_with("ProjectionExec")
                    && w[2].starts_with("HashJoinExec")
            })
            .count()
    }

    async fn assert_fires(t: &Tables, sql: &str, settings: &[(&str, &str)]) -> String {
        let (plan, answer) = t.run(sql, settings).await;
        let mut off = settings.to_vec();
        off.push(("tally.eager_aggregation", "false"));
        let (plain, expected) = t.run(sql, &off).await;
        assert!(eager_merges(&plan) > 0, "{sql}\n{plan}");
        assert_eq!(eager_merges(&plain), 0, "{sql}\n{plain}");
        assert_eq!(answer, expected, "{sql}\n{plan}");
        plan
    }

    #[tokio::test]
    async fn decomposable_aggregates_of_one_side_go_below_inner_and_semi_joins() {
        let t = tables().await;
        let plan = assert_fires(
            &t,
            "SELECT o_priority, sum(l_qty) AS s, count(*) AS n, avg(l_qty) AS a, \
             min(l_qty) AS lo, max(l_mode) AS hi FROM orders JOIN lineitem \
             ON l_orderkey = o_orderkey GROUP BY o_priority ORDER BY o_priority",
            &[],
        )
        .await;
        assert!(
            plan.contains("AggregateExec: mode=Partial, gby=[l_orderkey@0 as l_orderkey]"),
            "{plan}"
        );
        assert_fires(
            &t,
            "SELECT l_orderkey % 3 AS k, sum(l_qty) AS s FROM lineitem WHERE l_orderkey IN \
             (SELECT o_orderkey FROM orders WHERE o_priority = 'p1') GROUP BY l_orderkey % 3 \
             ORDER BY k",
            &[],
        )
        .await;
        // A semi join over an inner join (TPC-H Q18's shape): the partial aggregate goes
        // through both, and the answer stays exact.
        let plan = assert_fires(
            &t,
            "SELECT o_priority, sum(l_qty) AS s, count(l_mode) AS n FROM orders \
             JOIN lineitem ON l_orderkey = o_orderkey WHERE o_orderkey IN \
             (SELECT l_orderkey FROM lineitem WHERE l_qty > 45) \
             GROUP BY o_priority ORDER BY o_priority",
            &[],
        )
        .await;
        assert_eq!(eager_merges(&plan), 2, "{plan}");
    }

    #[tokio::test]
    async fn partitioned_joins_shuffle_the_partial_states() {
        let t = tables().await;
        let plan = assert_fires(
            &t,
            "SELECT o_priority, sum(l_qty) AS s FROM orders JOIN lineitem \
             ON l_orderkey = o_orderkey GROUP BY o_priority ORDER BY o_priority",
            &[("tally.broadcast_threshold_bytes", "0")],
        )
        .await;
        let exchange = plan
            .lines()
            .position(|l| l.contains("RepartitionExec: partitioning=Hash([l_orderkey@0]"))
            .unwrap_or_else(|| panic!("{plan}"));
        let next = plan.lines().nth(exchange + 1).unwrap();
        assert!(next.contains("AggregateExec: mode=Partial"), "{plan}");
        // Grouped by the join key, DataFusion aggregates in one phase after the join; the
        // pushed partial states are then finished right above it.
        let plan = assert_fires(
            &t,
            "SELECT l_orderkey, o_priority, sum(l_qty) AS s, avg(l_qty) AS a FROM orders \
             JOIN lineitem ON l_orderkey = o_orderkey GROUP BY l_orderkey, o_priority \
             ORDER BY l_orderkey",
            &[("tally.broadcast_threshold_bytes", "0")],
        )
        .await;
        assert!(
            plan.contains("AggregateExec: mode=FinalPartitioned"),
            "{plan}"
        );
    }

    #[tokio::test]
    async fn join_filters_keep_their_columns_in_the_partial_groups() {
        let t = tables().await;
        // l_qty joins the groups, which leaves little reduction: force the rule.
        assert_fires(
            &t,
            "SELECT o_priority, sum(l_qty) AS s, count(*) AS n FROM orders JOIN lineitem \
             ON l_orderkey = o_orderkey AND l_qty < o_flag * 20 GROUP BY o_priority \
             ORDER BY o_priority",
            &[("tally.eager_aggregation_min_reduction", "0")],
        )
        .await;
        // An anti join keeps or drops all rows of one key together, like a semi join.
        assert_fires(
            &t,
            "SELECT l_mode, sum(l_qty) AS s, count(*) AS n FROM lineitem WHERE NOT EXISTS \
             (SELECT 1 FROM orders WHERE o_orderkey = l_orderkey AND o_flag = 1) \
             GROUP BY l_mode ORDER BY l_mode",
            &[("tally.eager_aggregation_min_reduction", "0")],
        )
        .await;
    }

    #[tokio::test]
    async fn rule_does_not_fire_where_it_would_be_wrong_or_not_pay() {
        let t = tables().await;
        let join = "FROM orders JOIN lineitem ON l_orderkey = o_orderkey GROUP BY o_priority";
        for (sql, settings) in [
            (
                "SELECT o_priority, sum(l_qty) FROM orders LEFT JOIN lineitem \
                 ON l_orderkey = o_orderkey GROUP BY o_priority"
                    .to_string(),
                vec![],
            ),
            (
                format!("SELECT o_priority, sum(l_qty + o_flag) {join}"),
                vec![],
            ),
            (
                format!("SELECT o_priority, sum(l_qty), max(o_flag) {join}"),
                vec![],
            ),
            (
                format!("SELECT o_priority, count(DISTINCT l_qty) {join}"),
                vec![],
            ),
            (format!("SELECT o_priority, median(l_qty) {join}"), vec![]),
            (
                format!("SELECT o_priority, sum(l_qty * random()) {join}"),
                vec![],
            ),
            (
                format!("SELECT o_priority, sum(l_qty) FILTER (WHERE l_qty > 5) {join}"),
                vec![],
            ),
            (
                format!("SELECT o_priority, sum(l_qty) {join}"),
                vec![("tally.eager_aggregation_min_reduction", "100")],
            ),
            (
                format!("SELECT o_priority, sum(l_qty) {join}"),
                vec![("tally.planner", "naive")],
            ),
        ] {
            let (plan, _) = t.run(&sql, &settings).await;
            assert_eq!(eager_merges(&plan), 0, "{sql}\n{plan}");
        }
    }
}
