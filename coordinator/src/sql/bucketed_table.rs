//! A bucketed table as DataFusion sees it: a Parquet listing whose scan has one partition per
//! bucket and declares itself hash partitioned on the bucket columns. DataFusion then plans
//! joins and aggregations on those columns with no repartition at all.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfig, FileScanConfigBuilder};
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::Result;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use tally_common::bucketing::{BucketSpec, bucket_of};

use crate::options::TallyOptions;
use arrow::datatypes::SchemaRef;

#[derive(Debug)]
pub(crate) struct BucketedTable {
    files: Arc<dyn TableProvider>,
    spec: BucketSpec,
}

impl BucketedTable {
    pub(crate) fn new(files: Arc<dyn TableProvider>, spec: BucketSpec) -> Self {
        Self { files, spec }
    }
}

#[async_trait]
impl TableProvider for BucketedTable {
    fn schema(&self) -> SchemaRef {
        self.files.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        self.files.supports_filters_pushdown(filters)
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let plan = self.files.scan(state, projection, filters, limit).await?;
        let enabled = state
            .config_options()
            .extensions
            .get::<TallyOptions>()
            .is_none_or(|o| o.bucketed_scans && !o.planner.eq_ignore_ascii_case("naive"));
        if !enabled {
            return Ok(plan);
        }
        Ok(scan_by_bucket(&plan, &self.spec, &self.schema())?.unwrap_or(plan))
    }
}

/// The same scan with file group `b` holding bucket `b`'s files, declared hash partitioned;
/// `None` when the files are not laid out in buckets.
fn scan_by_bucket(
    plan: &Arc<dyn ExecutionPlan>,
    spec: &BucketSpec,
    table_schema: &SchemaRef,
) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    let Some(config) = plan
        .downcast_ref::<DataSourceExec>()
        .and_then(|exec| exec.data_source().downcast_ref::<FileScanConfig>())
    else {
        return Ok(None);
    };
    let mut buckets = vec![Vec::new(); spec.buckets];
    for file in config.file_groups.iter().flat_map(|group| group.files()) {
        let name = file.object_meta.location.filename().unwrap_or_default();
        match bucket_of(name) {
            Some(bucket) if bucket < spec.buckets => buckets[bucket].push(file.clone()),
            _ => return Ok(None),
        }
    }
    let config = FileScanConfigBuilder::from(config.clone())
        .with_file_groups(buckets.into_iter().map(FileGroup::new).collect())
        .with_output_partitioning(Some(spec.partitioning(table_schema)?))
        .build();
    Ok(Some(DataSourceExec::from_data_source(config)))
}
