//! The last operator of a write into a Hive-style partitioned folder (`INSERT ... PARTITION
//! (day) SELECT`, a partitioned `CREATE TABLE ... AS SELECT`): each task splits its rows by
//! their values of the partition columns and writes the other columns of each group to
//! `dir/col=value/.../part-<task>.parquet`, the layout Spark and Hive write and every
//! engine's Hive partition discovery reads. With no partition columns a task writes
//! `dir/part-<task>.parquet`. Outputs one row per task: (task, rows).

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch, UInt32Array, UInt64Array};
use arrow::compute::{cast, take_record_batch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, Partitioning, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, PlanProperties,
};
use futures::StreamExt;
use parquet::arrow::ArrowWriter;

use crate::bucketing::{io_error, writer_properties};

/// Most partition folders one task writes at once (Hive's `max.dynamic.partitions.pernode`
/// is 100, Spark's total 1000): each open file buffers a row group in memory.
pub const MAX_PARTITIONS_PER_TASK: usize = 1000;

#[derive(Debug, Clone)]
pub struct HivePartitionSinkExec {
    input: Arc<dyn ExecutionPlan>,
    dir: PathBuf,
    partition_columns: Vec<String>,
    properties: Arc<PlanProperties>,
}

impl HivePartitionSinkExec {
    /// `partition_columns` name columns of `input`, outermost folder level first.
    pub fn try_new(
        input: Arc<dyn ExecutionPlan>,
        dir: PathBuf,
        partition_columns: Vec<String>,
    ) -> Result<Self> {
        let schema = input.schema();
        for column in &partition_columns {
            schema.index_of(column)?;
        }
        let properties = PlanProperties::new(
            EquivalenceProperties::new(sink_schema()),
            Partitioning::UnknownPartitioning(input.output_partitioning().partition_count()),
            EmissionType::Final,
            Boundedness::Bounded,
        );
        Ok(Self {
            input,
            dir,
            partition_columns,
            properties: Arc::new(properties),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn partition_columns(&self) -> &[String] {
        &self.partition_columns
    }
}

fn sink_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("task", DataType::UInt32, false),
        Field::new("rows", DataType::UInt64, false),
    ]))
}

/// Refuses a partition value that cannot be one folder name read back as itself: folder
/// separators, `%` (readers percent-decode names), control characters, and names hidden
/// from listings (a leading `.` or `_`).
pub fn check_partition_value(column: &str, value: &str) -> Result<()> {
    let bad = value.is_empty()
        || value.starts_with('.')
        || value.starts_with('_')
        || value
            .chars()
            .any(|c| matches!(c, '/' | '\\' | '%') || c.is_control());
    if bad {
        return Err(DataFusionError::Execution(format!(
            "partition value '{}' of column {column} cannot name a folder: it must be \
             non-empty, without '/', '\\', '%' or control characters, and not start with \
             '.' or '_'",
            value.escape_debug()
        )));
    }
    Ok(())
}

/// The folder of one partition under `dir`.
pub fn partition_folder(dir: &Path, columns: &[String], values: &[String]) -> PathBuf {
    columns
        .iter()
        .zip(values)
        .fold(dir.to_path_buf(), |dir, (column, value)| {
            dir.join(format!("{column}={value}"))
        })
}

/// The rows of `batch` grouped by their partition values (as text, the way they are named
/// in folders), in the order each group first appears.
fn group_rows(
    batch: &RecordBatch,
    key_indices: &[usize],
    columns: &[String],
) -> Result<Vec<(Vec<String>, Vec<u32>)>> {
    let keys = key_indices
        .iter()
        .map(|&i| cast(batch.column(i), &DataType::Utf8))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let keys: Vec<_> = keys.iter().map(|k| k.as_string::<i32>()).collect();
    let mut groups: Vec<(Vec<String>, Vec<u32>)> = Vec::new();
    let mut index: HashMap<Vec<String>, usize> = HashMap::new();
    for row in 0..batch.num_rows() {
        let mut values = Vec::with_capacity(keys.len());
        for (key, column) in keys.iter().zip(columns) {
            if key.is_null(row) {
                return Err(DataFusionError::Execution(format!(
                    "partition column {column} is NULL in a row: a partition needs a value"
                )));
            }
            values.push(key.value(row).to_string());
        }
        match index.get(&values) {
            Some(&group) => groups[group].1.push(row as u32),
            None => {
                for (value, column) in values.iter().zip(columns) {
                    check_partition_value(column, value)?;
                }
                index.insert(values.clone(), groups.len());
                groups.push((values, vec![row as u32]));
            }
        }
    }
    Ok(groups)
}

/// Writes every batch of `input` into the partition folders under `dir`; returns the rows.
async fn write_partitions(
    mut input: SendableRecordBatchStream,
    dir: PathBuf,
    columns: Vec<String>,
    task: usize,
) -> Result<u64> {
    let schema = input.schema();
    let key_indices = columns
        .iter()
        .map(|c| schema.index_of(c))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let file_indices: Vec<usize> = (0..schema.fields().len())
        .filter(|i| !key_indices.contains(i))
        .collect();
    let file_schema = Arc::new(schema.project(&file_indices)?);
    let mut writers: HashMap<Vec<String>, ArrowWriter<File>> = HashMap::new();
    let mut rows = 0u64;
    while let Some(batch) = input.next().await {
        let batch = batch?;
        rows += batch.num_rows() as u64;
        let file_columns = batch.project(&file_indices)?;
        for (values, indices) in group_rows(&batch, &key_indices, &columns)? {
            let piece = take_record_batch(&file_columns, &UInt32Array::from(indices))?;
            if !writers.contains_key(&values) {
                if writers.len() == MAX_PARTITIONS_PER_TASK {
                    return Err(DataFusionError::Execution(format!(
                        "one task writes more than {MAX_PARTITIONS_PER_TASK} partitions of \
                         ({}): partition by fewer values",
                        columns.join(", ")
                    )));
                }
                let folder = partition_folder(&dir, &columns, &values);
                std::fs::create_dir_all(&folder).map_err(|e| io_error(&folder, e))?;
                let path = folder.join(format!("part-{task:05}.parquet"));
                let file = File::create(&path).map_err(|e| io_error(&path, e))?;
                let writer =
                    ArrowWriter::try_new(file, file_schema.clone(), Some(writer_properties()))?;
                writers.insert(values.clone(), writer);
            }
            writers
                .get_mut(&values)
                .expect("inserted above")
                .write(&piece)?;
        }
    }
    for writer in writers.into_values() {
        writer.close()?;
    }
    Ok(rows)
}

impl DisplayAs for HivePartitionSinkExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "HivePartitionSinkExec: dir={}, partition_by=({})",
            self.dir.display(),
            self.partition_columns.join(", ")
        )
    }
}

impl ExecutionPlan for HivePartitionSinkExec {
    fn name(&self) -> &'static str {
        "HivePartitionSinkExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if children.len() != 1 {
            return Err(DataFusionError::Internal(
                "HivePartitionSinkExec takes exactly one child".to_string(),
            ));
        }
        Ok(Arc::new(Self::try_new(
            children.swap_remove(0),
            self.dir.clone(),
            self.partition_columns.clone(),
        )?))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context)?;
        let (dir, columns) = (self.dir.clone(), self.partition_columns.clone());
        let written = futures::stream::once(async move {
            let rows = write_partitions(input, dir, columns, partition).await?;
            Ok(RecordBatch::try_new(
                sink_schema(),
                vec![
                    Arc::new(UInt32Array::from(vec![partition as u32])),
                    Arc::new(UInt64Array::from(vec![rows])),
                ],
            )?)
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            sink_schema(),
            written,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use datafusion::datasource::memory::MemorySourceConfig;
    use datafusion::prelude::SessionContext;

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        names.sort();
        names
    }

    #[tokio::test]
    async fn rows_land_in_the_folder_of_their_partition_values() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("clicks", DataType::Int64, false),
            Field::new("day", DataType::Utf8, true),
            Field::new("hour", DataType::Int64, false),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(vec![1, 2, 3, 4])),
                Arc::new(StringArray::from(vec!["d1", "d2", "d1", "d1"])),
                Arc::new(Int64Array::from(vec![0, 0, 0, 7])),
            ],
        )
        .unwrap();
        let input = MemorySourceConfig::try_new_exec(&[vec![batch]], schema, None).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let columns = vec!["day".to_string(), "hour".to_string()];
        let sink =
            HivePartitionSinkExec::try_new(input, dir.path().to_path_buf(), columns).unwrap();
        let ctx = SessionContext::new();
        let out = datafusion::physical_plan::collect(Arc::new(sink), ctx.task_ctx())
            .await
            .unwrap();
        assert_eq!(
            out[0]
                .column(1)
                .as_primitive::<arrow::datatypes::UInt64Type>()
                .value(0),
            4
        );
        assert_eq!(names(dir.path()), vec!["day=d1", "day=d2"]);
        assert_eq!(names(&dir.path().join("day=d1")), vec!["hour=0", "hour=7"]);
        let file = File::open(dir.path().join("day=d1/hour=0/part-00000.parquet")).unwrap();
        let rows: Vec<RecordBatch> =
            parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(file, 1024)
                .unwrap()
                .collect::<std::result::Result<_, _>>()
                .unwrap();
        // Only the file columns are in the file: the folders hold the partition values.
        assert_eq!(rows[0].num_columns(), 1);
        assert_eq!(
            rows[0]
                .column(0)
                .as_primitive::<arrow::datatypes::Int64Type>()
                .values(),
            &[1, 3]
        );
    }

    #[test]
    fn values_that_cannot_name_a_folder_are_refused() {
        for bad in ["", "a/b", "..", "_hidden", "50%", "a\nb"] {
            assert!(check_partition_value("day", bad).is_err(), "{bad:?}");
        }
        for good in ["2026-11-01", "-1", "DE", "2026-11-01 10:00:00", "a b"] {
            check_partition_value("day", good).unwrap();
        }
    }
}
