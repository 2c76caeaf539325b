//! A view's aggregates as DataFusion's partial/final aggregate pieces. The view stores the
//! partial states (one row per group) as Parquet; a refresh merges new partial states into
//! them with a `PartialReduce`, and reading the view finalizes them. The aggregates are
//! DataFusion's own, except that distinct counts and sums keep Tally's compact exact value
//! sets and `approx_distinct` its compact sketch, so states merge at any grain.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::datatypes::{Schema, SchemaRef};
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfig, FileScanConfigBuilder};
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::Result;
use datafusion::execution::SessionState;
use datafusion::logical_expr::AggregateUDF;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::aggregate::{AggregateExprBuilder, AggregateFunctionExpr};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode, PhysicalGroupBy};
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::expressions::Column;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::repartition::RepartitionExec;
use tally_common::bucketing::BucketSpec;
use tally_common::distinct::{DistinctKind, compact_approx_distinct_udaf, distinct_udaf, sketches};
use tally_meta::CoveredInput;

use super::definition::{StateKind, ViewAggregate, ViewColumn, ViewDefinition};
use crate::error::CoordinatorError;

/// A view's definition turned into the physical aggregate pieces every refresh and read uses.
#[derive(Debug)]
pub(crate) struct CompiledView {
    pub definition: ViewDefinition,
    group_by: PhysicalGroupBy,
    aggregates: Vec<Arc<AggregateFunctionExpr>>,
    /// What the aggregates read: the definition's input.
    input_schema: SchemaRef,
    /// One row per group: the dimensions, then each aggregate's state columns.
    pub state_schema: SchemaRef,
    /// The view's columns as users see them.
    pub output_schema: SchemaRef,
}

impl CompiledView {
    pub(crate) async fn compile(
        state: &SessionState,
        query: &str,
    ) -> Result<Self, CoordinatorError> {
        let definition = ViewDefinition::plan(state, query).await?;
        let input_dfschema = definition.input.schema().clone();
        let input_schema = input_dfschema.inner().clone();
        let physical = |expr| {
            state
                .create_physical_expr(expr, &input_dfschema)
                .map_err(CoordinatorError::from_datafusion)
        };
        let group_by = PhysicalGroupBy::new_single(
            definition
                .dimensions
                .iter()
                .map(|d| Ok((physical(d.expr.clone())?, d.name.clone())))
                .collect::<Result<_, CoordinatorError>>()?,
        );
        let mut aggregates = Vec::new();
        for aggregate in &definition.aggregates {
            let args = aggregate
                .function
                .params
                .args
                .iter()
                .map(|a| physical(a.clone()))
                .collect::<Result<Vec<_>, _>>()?;
            let udaf = state_udaf(aggregate, &args, &input_schema)?;
            let expr = AggregateExprBuilder::new(udaf, args)
                .schema(input_schema.clone())
                .alias(&aggregate.name)
                .human_display(aggregate.function_sql())
                .build()
                .map_err(CoordinatorError::from_datafusion)?;
            aggregates.push(Arc::new(expr));
        }
        let mut view = Self {
            definition,
            group_by,
            aggregates,
            input_schema: input_schema.clone(),
            state_schema: Arc::new(Schema::empty()),
            output_schema: Arc::new(Schema::empty()),
        };
        let partial = view
            .partial(Arc::new(EmptyExec::new(input_schema)))
            .map_err(CoordinatorError::from_datafusion)?;
        view.state_schema = partial.schema();
        let finalized = view
            .finalize(Arc::new(EmptyExec::new(view.state_schema.clone())))
            .map_err(CoordinatorError::from_datafusion)?;
        view.output_schema = finalized.schema();
        Ok(view)
    }

    /// The partial states of `input` (rows of the definition's input).
    pub(crate) fn partial(&self, input: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
        self.aggregate(AggregateMode::Partial, self.group_by.clone(), input)
    }

    /// State rows (several per group) merged into one state row per group, hash-bucketed as
    /// `spec` says: partition `b` holds bucket `b`.
    pub(crate) fn merge(
        &self,
        states: Arc<dyn ExecutionPlan>,
        spec: &BucketSpec,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let bucketed = RepartitionExec::try_new(states, spec.partitioning(&self.state_schema)?)?;
        self.aggregate(
            AggregateMode::PartialReduce,
            self.group_by.as_final(),
            Arc::new(bucketed),
        )
    }

    /// The view's columns from state rows partitioned so that each group is in one partition.
    pub(crate) fn finalize(
        &self,
        states: Arc<dyn ExecutionPlan>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let finalized = self.aggregate(
            AggregateMode::FinalPartitioned,
            self.group_by.as_final(),
            states,
        )?;
        let dimensions = self.definition.dimensions.len();
        let schema = finalized.schema();
        let columns = self
            .definition
            .columns
            .iter()
            .map(|column| {
                let index = match column {
                    ViewColumn::Dimension(i) => *i,
                    ViewColumn::Aggregate(i) => dimensions + i,
                };
                let name = schema.field(index).name().clone();
                (
                    Arc::new(Column::new(&name, index)) as Arc<dyn PhysicalExpr>,
                    name,
                )
            })
            .collect::<Vec<_>>();
        Ok(Arc::new(ProjectionExec::try_new(columns, finalized)?))
    }

    /// Aggregates `aggregates` (indexes into the definition's) at the grain of dimensions
    /// `groups`, from state rows that pass `filter`: a coarser report answered from the
    /// states. Partial states merge at any grain, distinct value sets included.
    pub(crate) fn rollup(
        &self,
        states: Arc<dyn ExecutionPlan>,
        groups: &[usize],
        aggregates: &[usize],
        filter: Option<Arc<dyn PhysicalExpr>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let input = match filter {
            Some(filter) => {
                Arc::new(FilterExec::try_new(filter, states)?) as Arc<dyn ExecutionPlan>
            }
            None => states,
        };
        let schema = input.schema();
        let column = |i: usize| {
            let name = schema.field(i).name().clone();
            (
                Arc::new(Column::new(&name, i)) as Arc<dyn PhysicalExpr>,
                name,
            )
        };
        // The final aggregate reads each aggregate's states at consecutive positions after
        // the groups: keep exactly those columns, in that order.
        let mut columns: Vec<_> = groups.iter().map(|&g| column(g)).collect();
        for &a in aggregates {
            for field in self.aggregates[a].state_fields()? {
                columns.push(column(schema.index_of(field.name())?));
            }
        }
        let projected = Arc::new(ProjectionExec::try_new(columns, input)?);
        let group_by = PhysicalGroupBy::new_single(
            groups
                .iter()
                .enumerate()
                .map(|(i, &g)| {
                    let name = self.definition.dimensions[g].name.clone();
                    (
                        Arc::new(Column::new(&name, i)) as Arc<dyn PhysicalExpr>,
                        name,
                    )
                })
                .collect(),
        );
        let mode = if groups.is_empty() {
            AggregateMode::Final
        } else {
            AggregateMode::FinalPartitioned
        };
        let chosen: Vec<_> = aggregates
            .iter()
            .map(|&a| self.aggregates[a].clone())
            .collect();
        Ok(Arc::new(AggregateExec::try_new(
            mode,
            group_by,
            chosen.clone(),
            vec![None; chosen.len()],
            projected,
            self.input_schema.clone(),
        )?))
    }

    fn aggregate(
        &self,
        mode: AggregateMode,
        group_by: PhysicalGroupBy,
        input: Arc<dyn ExecutionPlan>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(AggregateExec::try_new(
            mode,
            group_by,
            self.aggregates.clone(),
            vec![None; self.aggregates.len()],
            input,
            self.input_schema.clone(),
        )?))
    }

    /// The bucketing of the states: on `bucket_by`, which must name dimensions.
    pub(crate) fn bucket_spec(
        &self,
        bucket_by: &[String],
        buckets: usize,
    ) -> Result<BucketSpec, CoordinatorError> {
        for column in bucket_by {
            if self.definition.dimension(column).is_none() {
                return Err(CoordinatorError::Query(format!(
                    "bucket_by column {column} is not a dimension of the view"
                )));
            }
        }
        BucketSpec::new(bucket_by.to_vec(), buckets).map_err(CoordinatorError::from_datafusion)
    }
}

/// The aggregate that keeps `aggregate`'s state: DataFusion's, or Tally's compact set or
/// sketch for distinct values.
fn state_udaf(
    aggregate: &ViewAggregate,
    args: &[Arc<dyn PhysicalExpr>],
    input_schema: &Schema,
) -> Result<Arc<AggregateUDF>, CoordinatorError> {
    let input_type = match args {
        [arg] => Some(
            arg.data_type(input_schema)
                .map_err(CoordinatorError::from_datafusion)?,
        ),
        _ => None,
    };
    let distinct = |kind: DistinctKind| match &input_type {
        Some(t) if kind.supports(t) => Ok(distinct_udaf(kind)),
        _ => Err(CoordinatorError::Query(format!(
            "{}: a materialized view keeps distinct values of one column of a plain type \
             (integers, decimals, strings, dates){}",
            aggregate.function_sql(),
            input_type
                .as_ref()
                .map(|t| format!(", not {t}"))
                .unwrap_or_default()
        ))),
    };
    Ok(match aggregate.kind {
        StateKind::CountDistinct => distinct(DistinctKind::Count)?,
        StateKind::SumDistinct => distinct(DistinctKind::Sum)?,
        StateKind::ApproxDistinct if input_type.as_ref().is_some_and(sketches) => {
            compact_approx_distinct_udaf()
        }
        _ => aggregate.function.func.clone(),
    })
}

/// Every source file a scan plan reads, once each, as it is now.
pub(crate) fn inputs_of(plan: &Arc<dyn ExecutionPlan>) -> Result<Vec<CoveredInput>> {
    let mut inputs = HashSet::new();
    plan.apply(|node| {
        if let Some(config) = file_scan(node) {
            for file in config.file_groups.iter().flat_map(|g| g.files()) {
                inputs.insert(CoveredInput {
                    path: file.object_meta.location.to_string(),
                    size: file.object_meta.size,
                    modified_ms: file.object_meta.last_modified.timestamp_millis(),
                });
            }
        }
        Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
    })?;
    let mut inputs: Vec<_> = inputs.into_iter().collect();
    inputs.sort();
    Ok(inputs)
}

/// The scan plan reading only the files in `paths` (any byte ranges kept), spread over as
/// many partitions as the plan had, or fewer when there are fewer files. `None` when it reads
/// nothing at all.
pub(crate) fn restrict_to(
    plan: Arc<dyn ExecutionPlan>,
    paths: &HashSet<String>,
) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    let mut kept_any = false;
    let restricted = plan
        .transform_up(|node| {
            let Some(config) = file_scan(&node) else {
                return Ok(Transformed::no(node));
            };
            let partitions = config.file_groups.len().max(1);
            let files: Vec<_> = config
                .file_groups
                .iter()
                .flat_map(|g| g.files())
                .filter(|f| paths.contains(&f.object_meta.location.to_string()))
                .cloned()
                .collect();
            kept_any |= !files.is_empty();
            let mut groups = vec![Vec::new(); partitions.min(files.len()).max(1)];
            let count = groups.len();
            for (i, file) in files.into_iter().enumerate() {
                groups[i % count].push(file);
            }
            // Regrouped files no longer hold one bucket per partition.
            let config = FileScanConfigBuilder::from(config.clone())
                .with_file_groups(groups.into_iter().map(FileGroup::new).collect())
                .with_output_partitioning(None)
                .build();
            Ok(Transformed::yes(
                DataSourceExec::from_data_source(config) as Arc<dyn ExecutionPlan>
            ))
        })
        .data()?;
    Ok(kept_any.then_some(restricted))
}

fn file_scan(node: &Arc<dyn ExecutionPlan>) -> Option<&FileScanConfig> {
    node.downcast_ref::<DataSourceExec>()
        .and_then(|exec| exec.data_source().downcast_ref::<FileScanConfig>())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::datasource::MemTable;
    use datafusion::prelude::SessionContext;

    use super::*;

    #[tokio::test]
    async fn states_hold_dimensions_then_mergeable_states_and_finalize_to_the_view() {
        let ctx = SessionContext::new();
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Utf8, true),
            Field::new("b", DataType::Int32, true),
            Field::new("x", DataType::Float64, true),
        ]));
        let table = MemTable::try_new(schema, vec![vec![]]).unwrap();
        ctx.register_table("t", Arc::new(table)).unwrap();
        let view = CompiledView::compile(
            &ctx.state(),
            "SELECT avg(x) AS mean, a, count(DISTINCT b) AS users, approx_distinct(b) AS approx \
             FROM t GROUP BY a",
        )
        .await
        .unwrap();
        let states: Vec<_> = view
            .state_schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        assert_eq!(states[0], "a");
        assert!(states.len() > 4, "avg keeps a count and a sum: {states:?}");
        let output: Vec<_> = view
            .output_schema
            .fields()
            .iter()
            .map(|f| (f.name().as_str(), f.data_type().clone()))
            .collect();
        assert_eq!(
            output,
            [
                ("mean", DataType::Float64),
                ("a", DataType::Utf8),
                ("users", DataType::Int64),
                ("approx", DataType::UInt64),
            ]
        );
    }
}
