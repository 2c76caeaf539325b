//! Query rewrite: an aggregation over a view's source is answered from the view's stored
//! states when the view can answer it exactly: its GROUP BY names only view dimensions, its
//! filter is the view's filter plus conditions on dimensions only, and each of its aggregates
//! is one the view keeps. The states are merged to the query's (coarser) grain, exact
//! distinct counts included. Only views that cover every current source file are offered
//! (the caller checks that); `tally.view_rewrite = false` turns the rule off. The plan then
//! scans the view's `gen-<n>` state files instead of the source, which EXPLAIN shows.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::datatypes::DataType;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::common::internal_datafusion_err;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DFSchema};
use datafusion::datasource::{TableType, provider_as_source};
use datafusion::error::Result;
use datafusion::execution::SessionState;
use datafusion::logical_expr::expr::{AggregateFunction, Case};
use datafusion::logical_expr::utils::{conjunction, split_conjunction};
use datafusion::logical_expr::{Aggregate, Expr, LogicalPlan, LogicalPlanBuilder, cast, lit};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::union::UnionExec;

use super::definition::{StateKind, ViewDefinition};
use super::states::restrict_to;
use super::table::MaterializedViewTable;

/// Rewrites every aggregation in `plan` that one of `views` can answer; returns the plan and
/// the names of the views used.
pub(crate) fn answer_from_views(
    plan: LogicalPlan,
    views: &[ViewCandidate],
) -> Result<(LogicalPlan, Vec<String>)> {
    let mut used = Vec::new();
    let plan = plan
        .transform_up(|node| {
            let LogicalPlan::Aggregate(aggregate) = &node else {
                return Ok(Transformed::no(node));
            };
            for view in views {
                if let Some(answer) = answer_from(aggregate, view)? {
                    used.push(match view.uncovered.len() {
                        0 => view.name.clone(),
                        n => format!(
                            "{} plus {n} source file(s) it does not cover yet",
                            view.name
                        ),
                    });
                    return Ok(Transformed::yes(answer));
                }
            }
            Ok(Transformed::no(node))
        })
        .data()?;
    Ok((plan, used))
}

/// A view a query may be answered from: one whose covered files are all unchanged. Source
/// files it does not cover yet are read and their partial states merged with the view's.
#[derive(Debug, Clone)]
pub(crate) struct ViewCandidate {
    pub name: String,
    pub table: Arc<MaterializedViewTable>,
    /// Paths of the source files the view does not cover yet.
    pub uncovered: HashSet<String>,
}

/// `aggregate` answered from `candidate`, when the view can answer it.
fn answer_from(aggregate: &Aggregate, candidate: &ViewCandidate) -> Result<Option<LogicalPlan>> {
    let (name, view) = (&candidate.name, &candidate.table);
    let definition = &view.compiled().definition;
    let Some((source, query_filters)) = scan_and_filters(&aggregate.input) else {
        return Ok(None);
    };
    let Some((_, view_filters)) = scan_and_filters(&definition.input) else {
        return Ok(None);
    };
    if source != definition.source || !view_filters.iter().all(|f| query_filters.contains(f)) {
        return Ok(None);
    }
    let dimensions: Vec<(Expr, &str)> = definition
        .dimensions
        .iter()
        .map(|d| Ok((unqualified(d.expr.clone())?, d.name.as_str())))
        .collect::<Result<_>>()?;
    let mut groups = Vec::new();
    for group in &aggregate.group_expr {
        let group = unqualified(group.clone())?;
        match dimensions.iter().position(|(expr, _)| *expr == group) {
            Some(index) => groups.push(index),
            None => return Ok(None),
        }
    }
    let mut conditions = Vec::new();
    for condition in query_filters.iter().filter(|f| !view_filters.contains(f)) {
        match over_dimensions(condition, &dimensions)? {
            Some(condition) => conditions.push(condition),
            None => return Ok(None),
        }
    }
    let kept: Vec<Expr> = definition
        .aggregates
        .iter()
        .map(|a| unqualified(Expr::AggregateFunction(a.function.clone())))
        .collect::<Result<_>>()?;
    let mut outputs = Vec::new();
    for expr in &aggregate.aggr_expr {
        let Expr::AggregateFunction(function) = expr.clone().unalias_nested().data else {
            return Ok(None);
        };
        let wanted = unqualified(Expr::AggregateFunction(function.clone()))?;
        match kept.iter().position(|k| *k == wanted) {
            Some(index) => outputs.push(Output::Kept(index)),
            None => match average_from_sum_and_count(&function, definition)? {
                Some(output) => outputs.push(output),
                None => return Ok(None),
            },
        }
    }
    // Each stored aggregate once, in the order the outputs first need it.
    let mut aggregates: Vec<usize> = Vec::new();
    for needed in outputs.iter().flat_map(Output::needs) {
        if !aggregates.contains(&needed) {
            aggregates.push(needed);
        }
    }
    // DataFusion's HyperLogLog serializes per-group sketches in a form its single-group
    // accumulator cannot merge, so a grand total of approx_distinct reads the source.
    let approx = |&a: &usize| definition.aggregates[a].kind == StateKind::ApproxDistinct;
    if groups.is_empty() && aggregates.iter().any(approx) {
        return Ok(None);
    }
    let rollup = Arc::new(ViewRollup::try_new(
        view.clone(),
        groups,
        aggregates,
        conjunction(conditions),
        candidate.uncovered.clone(),
    )?);
    // The same fields, types and qualifiers the aggregation had, so the plan above it reads
    // them unchanged.
    let column = |name: &str| Expr::Column(Column::new_unqualified(name));
    let stored = |index: usize| column(&definition.aggregates[index].name);
    let values = rollup
        .groups
        .iter()
        .map(|&g| column(&definition.dimensions[g].name))
        .chain(outputs.iter().map(|output| match output {
            Output::Kept(index) => stored(*index),
            Output::Average { sum, count } => Expr::Case(Case::new(
                None,
                vec![(
                    Box::new(stored(*count).eq(lit(0i64))),
                    Box::new(lit(ScalarValue::Float64(None))),
                )],
                Some(Box::new(
                    cast(stored(*sum), DataType::Float64) / cast(stored(*count), DataType::Float64),
                )),
            )),
        }));
    let columns: Vec<Expr> = values
        .zip(aggregate.schema.iter())
        .map(|(value, (qualifier, field))| value.alias_qualified(qualifier.cloned(), field.name()))
        .collect();
    let plan =
        LogicalPlanBuilder::scan(format!("{name}_states"), provider_as_source(rollup), None)?
            .project(columns)?
            .build()?;
    let same_types = plan
        .schema()
        .fields()
        .iter()
        .zip(aggregate.schema.fields())
        .all(|(ours, theirs)| ours.data_type() == theirs.data_type());
    Ok(same_types.then_some(plan))
}

/// A column of the answer: a stored aggregate as it is, or one derived from several.
enum Output {
    Kept(usize),
    /// `avg(x)` from the view's `sum(x)` and `count(x)`.
    Average {
        sum: usize,
        count: usize,
    },
}

impl Output {
    fn needs(&self) -> Vec<usize> {
        match self {
            Self::Kept(index) => vec![*index],
            Self::Average { sum, count } => vec![*sum, *count],
        }
    }
}

/// `avg(x)` (of a type averaged as Float64) from a view that keeps `sum(x)` and `count(x)`.
fn average_from_sum_and_count(
    function: &AggregateFunction,
    definition: &ViewDefinition,
) -> Result<Option<Output>> {
    let params = &function.params;
    if function.func.name() != "avg" || params.distinct || params.filter.is_some() {
        return Ok(None);
    }
    let [arg] = params.args.as_slice() else {
        return Ok(None);
    };
    // avg(integer) reads its argument cast to Float64; the sum keeps the integers.
    let arg = match arg {
        Expr::Cast(cast) if cast.field.data_type() == &DataType::Float64 => cast.expr.as_ref(),
        other => other,
    };
    let arg = unqualified(arg.clone())?;
    let find = |kind: StateKind| -> Result<Option<usize>> {
        for (index, kept) in definition.aggregates.iter().enumerate() {
            if kept.kind == kind
                && let [kept_arg] = kept.function.params.args.as_slice()
                && unqualified(kept_arg.clone())? == arg
            {
                return Ok(Some(index));
            }
        }
        Ok(None)
    };
    Ok(match (find(StateKind::Sum)?, find(StateKind::Count)?) {
        (Some(sum), Some(count)) => Some(Output::Average { sum, count }),
        _ => None,
    })
}

/// The table an aggregation reads and the conjuncts of the filters on the way, columns
/// unqualified; `None` through anything but filters, aliases and column projections.
fn scan_and_filters(plan: &LogicalPlan) -> Option<(String, Vec<Expr>)> {
    match plan {
        LogicalPlan::TableScan(scan) if scan.filters.is_empty() && scan.fetch.is_none() => {
            Some((scan.table_name.table().to_string(), Vec::new()))
        }
        LogicalPlan::Filter(filter) => {
            let (source, mut filters) = scan_and_filters(&filter.input)?;
            for conjunct in split_conjunction(&filter.predicate) {
                filters.push(unqualified(conjunct.clone()).ok()?);
            }
            Some((source, filters))
        }
        LogicalPlan::SubqueryAlias(alias) => scan_and_filters(&alias.input),
        LogicalPlan::Projection(projection)
            if projection.expr.iter().all(|e| matches!(e, Expr::Column(_))) =>
        {
            scan_and_filters(&projection.input)
        }
        _ => None,
    }
}

/// `expr` without table qualifiers or aliases: the source's columns are named alike in the
/// view's definition and in the query, whatever the query called the table.
fn unqualified(expr: Expr) -> Result<Expr> {
    expr.unalias_nested()
        .data
        .transform(|e| {
            Ok(match e {
                Expr::Column(column) if column.relation.is_some() => {
                    Transformed::yes(Expr::Column(Column::new_unqualified(column.name)))
                }
                other => Transformed::no(other),
            })
        })
        .data()
}

/// `condition` (over the source) as a condition on the view's dimensions, when every column
/// it reads is inside a dimension's expression.
fn over_dimensions(condition: &Expr, dimensions: &[(Expr, &str)]) -> Result<Option<Expr>> {
    const MARK: &str = "tally_view_dimension";
    let marked = condition
        .clone()
        .transform_down(|e| {
            Ok(match dimensions.iter().find(|(expr, _)| *expr == e) {
                Some((_, name)) => Transformed::new(
                    Expr::Column(Column::new(Some(MARK), *name)),
                    true,
                    TreeNodeRecursion::Jump,
                ),
                None => Transformed::no(e),
            })
        })
        .data()?;
    if marked
        .column_refs()
        .iter()
        .any(|c| c.relation.as_ref().is_none_or(|r| r.table() != MARK))
    {
        return Ok(None);
    }
    unqualified(marked).map(Some)
}

/// The view's states rolled up to a query's grain, as a table the query's plan scans.
#[derive(Debug)]
struct ViewRollup {
    view: Arc<MaterializedViewTable>,
    groups: Vec<usize>,
    aggregates: Vec<usize>,
    /// Over the dimensions, by their view names.
    filter: Option<Expr>,
    /// Source files read and merged with the stored states.
    uncovered: HashSet<String>,
    schema: SchemaRef,
}

impl ViewRollup {
    fn try_new(
        view: Arc<MaterializedViewTable>,
        groups: Vec<usize>,
        aggregates: Vec<usize>,
        filter: Option<Expr>,
        uncovered: HashSet<String>,
    ) -> Result<Self> {
        let compiled = view.compiled();
        let empty = Arc::new(EmptyExec::new(compiled.state_schema.clone()));
        let schema = compiled.rollup(empty, &groups, &aggregates, None)?.schema();
        Ok(Self {
            view,
            groups,
            aggregates,
            filter,
            uncovered,
            schema,
        })
    }
}

#[async_trait]
impl TableProvider for ViewRollup {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let compiled = self.view.compiled();
        let mut states = self.view.states().scan(state, None, &[], None).await?;
        if !self.uncovered.is_empty() {
            let session = state
                .as_any()
                .downcast_ref::<SessionState>()
                .ok_or_else(|| internal_datafusion_err!("a view rollup plans in a SessionState"))?;
            let source = session
                .create_physical_plan(&compiled.definition.input)
                .await?;
            if let Some(new) = restrict_to(source, &self.uncovered)? {
                states = UnionExec::try_new(vec![states, compiled.partial(new)?])?;
            }
        }
        let filter = match &self.filter {
            Some(filter) => {
                let schema = DFSchema::try_from(compiled.state_schema.as_ref().clone())?;
                Some(state.create_physical_expr(filter.clone(), &schema)?)
            }
            None => None,
        };
        let rollup = compiled.rollup(states, &self.groups, &self.aggregates, filter)?;
        match projection {
            Some(projection) => super::table::project(rollup, projection),
            None => Ok(rollup),
        }
    }
}
