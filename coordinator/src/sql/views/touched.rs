//! Which buckets of a view's states new source files can change, told from the files' own
//! Parquet statistics: when every bucket column is a plain source column holding one value
//! per file (a day's batch of a view bucketed by day), the file's rows all hash to one
//! bucket, and a refresh leaves the other buckets' files as they are.

use std::collections::BTreeSet;
use std::fs::File;
use std::path::Path;

use arrow::array::{Array, RecordBatch};
use arrow::datatypes::Schema;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::Expr;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::parquet::arrow::arrow_reader::statistics::StatisticsConverter;
use datafusion::physical_plan::metrics::Time;
use datafusion::physical_plan::repartition::BatchPartitioner;
use std::sync::Arc;
use tally_common::bucketing::BucketSpec;
use tally_meta::CoveredInput;

use super::states::CompiledView;

/// The buckets that `files` can change, or `None` when their statistics cannot tell (every
/// bucket may change).
pub(crate) fn touched_buckets(
    view: &CompiledView,
    spec: &BucketSpec,
    files: &[CoveredInput],
) -> Option<BTreeSet<usize>> {
    // The source column behind each bucket column, which must be a plain column.
    let sources: Vec<String> = spec
        .columns
        .iter()
        .map(|name| match &view.definition.dimension(name)?.expr {
            Expr::Column(column) => Some(column.name.clone()),
            _ => None,
        })
        .collect::<Option<_>>()?;
    let mut rows: Vec<Vec<ScalarValue>> = Vec::new();
    for file in files {
        // Object-store paths of local files are absolute paths without their leading '/'.
        let path = Path::new("/").join(&file.path);
        let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(path).ok()?).ok()?;
        let (schema, metadata) = (builder.schema(), builder.metadata());
        if metadata.file_metadata().num_rows() == 0 {
            continue;
        }
        let mut row = Vec::new();
        for column in &sources {
            let statistics = StatisticsConverter::try_new(
                column,
                schema,
                metadata.file_metadata().schema_descr(),
            )
            .ok()?;
            row.push(single_value(&statistics, metadata.row_groups())?);
        }
        rows.push(row);
    }
    if rows.is_empty() {
        return Some(BTreeSet::new());
    }
    // Hash the values as the states' bucket columns hold them.
    let fields: Vec<_> = spec
        .columns
        .iter()
        .map(|name| view.state_schema.field_with_name(name).ok().cloned())
        .collect::<Option<_>>()?;
    let columns = fields
        .iter()
        .enumerate()
        .map(|(i, field)| {
            let values = rows
                .iter()
                .map(|row| row[i].cast_to(field.data_type()))
                .collect::<Result<Vec<_>, _>>()
                .ok()?;
            ScalarValue::iter_to_array(values).ok()
        })
        .collect::<Option<Vec<_>>>()?;
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).ok()?;
    let partitioning = spec.partitioning(&batch.schema()).ok()?;
    let mut partitioner = BatchPartitioner::try_new(partitioning, Time::new(), 0, 1).ok()?;
    let mut touched = BTreeSet::new();
    partitioner
        .partition(batch, |bucket, _| {
            touched.insert(bucket);
            Ok(())
        })
        .ok()?;
    Some(touched)
}

/// The one non-null value every row group of a file holds in a column, if it holds one.
fn single_value(
    statistics: &StatisticsConverter,
    row_groups: &[datafusion::parquet::file::metadata::RowGroupMetaData],
) -> Option<ScalarValue> {
    let mins = statistics.row_group_mins(row_groups).ok()?;
    let maxes = statistics.row_group_maxes(row_groups).ok()?;
    let nulls = statistics.row_group_null_counts(row_groups).ok()?;
    let value = ScalarValue::try_from_array(&mins, 0).ok()?;
    for i in 0..mins.len() {
        let min = ScalarValue::try_from_array(&mins, i).ok()?;
        let max = ScalarValue::try_from_array(&maxes, i).ok()?;
        if min.is_null() || min != value || max != value || nulls.is_null(i) || nulls.value(i) != 0
        {
            return None;
        }
    }
    Some(value)
}
