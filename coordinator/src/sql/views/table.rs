//! A materialized view as a table: its stored states, bucketed by the view's dimensions,
//! finalized where they are read. Each bucket file holds one state row per group and no group
//! is in two buckets, so the final aggregation runs in the scan's own tasks and a plain
//! `SELECT` from a view moves no state between workers.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::error::Result;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::expressions::Column;
use datafusion::physical_plan::projection::ProjectionExec;
use tally_common::bucketing::BucketSpec;

use super::states::CompiledView;
use crate::sql::bucketed_table::BucketedTable;

/// The folder of one generation of a view's states.
pub(crate) fn generation_dir(view_dir: &Path, generation: u64) -> PathBuf {
    view_dir.join(format!("gen-{generation:06}"))
}

#[derive(Debug)]
pub(crate) struct MaterializedViewTable {
    view: Arc<CompiledView>,
    states: Arc<dyn TableProvider>,
}

impl MaterializedViewTable {
    /// The view whose states are the bucket files in `dir`.
    pub(crate) fn open(view: Arc<CompiledView>, dir: &Path, spec: BucketSpec) -> Result<Self> {
        let states = states_table(dir, view.state_schema.clone())?;
        Ok(Self {
            view,
            states: Arc::new(BucketedTable::new(states, spec)),
        })
    }

    pub(crate) fn compiled(&self) -> &Arc<CompiledView> {
        &self.view
    }

    /// The stored states as a table (one partition per bucket when bucketed scans are on).
    pub(crate) fn states(&self) -> &Arc<dyn TableProvider> {
        &self.states
    }
}

/// The Parquet files in `dir` read with the schema they were written with.
fn states_table(dir: &Path, schema: SchemaRef) -> Result<Arc<dyn TableProvider>> {
    let url = ListingTableUrl::parse(format!("{}/", dir.to_string_lossy()))?;
    let options =
        ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
    let config = ListingTableConfig::new(url)
        .with_listing_options(options)
        .with_schema(schema);
    Ok(Arc::new(ListingTable::try_new(config)?))
}

#[async_trait]
impl TableProvider for MaterializedViewTable {
    fn schema(&self) -> SchemaRef {
        self.view.output_schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(vec![
            TableProviderFilterPushDown::Unsupported;
            filters.len()
        ])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let states = self.states.scan(state, None, &[], None).await?;
        let finalized = self.view.finalize(states)?;
        match projection {
            Some(projection) => project(finalized, projection),
            None => Ok(finalized),
        }
    }
}

/// The columns `projection` of `plan`.
pub(crate) fn project(
    plan: Arc<dyn ExecutionPlan>,
    projection: &[usize],
) -> Result<Arc<dyn ExecutionPlan>> {
    let schema = plan.schema();
    let columns = projection
        .iter()
        .map(|&i| {
            let name = schema.field(i).name().clone();
            (
                Arc::new(Column::new(&name, i)) as Arc<dyn PhysicalExpr>,
                name,
            )
        })
        .collect::<Vec<_>>();
    Ok(Arc::new(ProjectionExec::try_new(columns, plan)?))
}
