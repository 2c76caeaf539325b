//! Bucketed tables: Parquet files split by the hash of one or more columns into N buckets,
//! with the same hash DataFusion's hash repartitioning uses. Bucket `b` of every table with
//! the same bucketing holds the same key values, so joins and aggregations on the bucket key
//! need no exchange. A table folder holds `bucket-<b>.parquet` files and a
//! `_tally_bucketing.json` that records the bucket columns and count.

use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{RecordBatch, UInt32Array, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::{EquivalenceProperties, Partitioning, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics;
use datafusion::physical_plan::repartition::BatchPartitioner;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, PlanProperties,
};
use futures::StreamExt;
use object_store::ObjectStoreExt;
use object_store::path::Path as ObjectPath;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};

pub const METADATA_FILE: &str = "_tally_bucketing.json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketSpec {
    pub columns: Vec<String>,
    pub buckets: usize,
}

impl fmt::Display for BucketSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} buckets by ({})",
            self.buckets,
            self.columns.join(", ")
        )
    }
}

impl BucketSpec {
    pub fn new(columns: Vec<String>, buckets: usize) -> Result<Self> {
        if columns.is_empty() || buckets == 0 {
            return Err(DataFusionError::Plan(
                "bucketing needs at least one column and one bucket".to_string(),
            ));
        }
        Ok(Self { columns, buckets })
    }

    /// The bucketing recorded in a table folder, if it is bucketed.
    pub fn read(dir: &Path) -> Result<Option<Self>> {
        let path = dir.join(METADATA_FILE);
        if !path.exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path).map_err(|e| io_error(&path, e))?;
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| DataFusionError::Plan(format!("{}: {e}", path.display())))
    }

    pub fn write(&self, dir: &Path) -> Result<()> {
        let path = dir.join(METADATA_FILE);
        std::fs::write(&path, self.to_json()).map_err(|e| io_error(&path, e))
    }

    /// The contents of `METADATA_FILE`.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("bucket spec serializes")
    }

    /// The hash partitioning that puts a row of `schema` into its bucket.
    pub fn partitioning(&self, schema: &Schema) -> Result<Partitioning> {
        let exprs = self
            .columns
            .iter()
            .map(|name| {
                Column::new_with_schema(name, schema)
                    .map(|c| Arc::new(c) as Arc<dyn PhysicalExpr>)
                    .map_err(|_| {
                        DataFusionError::Plan(format!("bucket column {name} is not in the table"))
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Partitioning::Hash(exprs, self.buckets))
    }
}

pub fn bucket_file(dir: &Path, bucket: usize) -> PathBuf {
    dir.join(format!("bucket-{bucket:05}.parquet"))
}

/// The bucket a file of a bucketed table belongs to, from its name.
pub fn bucket_of(file_name: &str) -> Option<usize> {
    file_name
        .strip_prefix("bucket-")?
        .split(['.', '-'])
        .next()?
        .parse()
        .ok()
}

pub(crate) fn writer_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build()
}

pub(crate) fn io_error(path: &Path, e: impl fmt::Display) -> DataFusionError {
    DataFusionError::Execution(format!("{}: {e}", path.display()))
}

/// Splits batches into bucket files in one process (used by `tally gen-tpch --bucket-by`).
pub struct BucketedParquetWriter {
    dir: PathBuf,
    schema: SchemaRef,
    spec: BucketSpec,
    partitioner: BatchPartitioner,
    writers: Vec<Option<ArrowWriter<File>>>,
}

impl BucketedParquetWriter {
    pub fn try_new(dir: &Path, schema: SchemaRef, spec: BucketSpec) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
        let partitioning = spec.partitioning(&schema)?;
        let partitioner = BatchPartitioner::try_new(partitioning, metrics::Time::new(), 0, 1)?;
        let writers = (0..spec.buckets).map(|_| None).collect();
        Ok(Self {
            dir: dir.to_path_buf(),
            schema,
            spec,
            partitioner,
            writers,
        })
    }

    pub fn write(&mut self, batch: RecordBatch) -> Result<()> {
        let (dir, schema, writers) = (&self.dir, &self.schema, &mut self.writers);
        self.partitioner.partition(batch, |bucket, piece| {
            if writers[bucket].is_none() {
                let path = bucket_file(dir, bucket);
                let file = File::create(&path).map_err(|e| io_error(&path, e))?;
                writers[bucket] = Some(ArrowWriter::try_new(
                    file,
                    schema.clone(),
                    Some(writer_properties()),
                )?);
            }
            Ok(writers[bucket]
                .as_mut()
                .expect("created above")
                .write(&piece)?)
        })
    }

    /// Closes the files (an empty file for a bucket without rows) and records the bucketing.
    pub fn finish(self) -> Result<()> {
        for (bucket, writer) in self.writers.into_iter().enumerate() {
            match writer {
                Some(writer) => {
                    writer.close()?;
                }
                None => {
                    let path = bucket_file(&self.dir, bucket);
                    let file = File::create(&path).map_err(|e| io_error(&path, e))?;
                    ArrowWriter::try_new(file, self.schema.clone(), Some(writer_properties()))?
                        .close()?;
                }
            }
        }
        self.spec.write(&self.dir)
    }
}

/// The last operator of a bucketed `CREATE TABLE ... AS SELECT`: its input is already hash
/// partitioned into the buckets, and partition `b` is written as bucket file `b`. Outputs one
/// row per bucket: (bucket, rows).
#[derive(Debug, Clone)]
pub struct BucketSinkExec {
    input: Arc<dyn ExecutionPlan>,
    dir: PathBuf,
    properties: Arc<PlanProperties>,
}

impl BucketSinkExec {
    pub fn new(input: Arc<dyn ExecutionPlan>, dir: PathBuf) -> Self {
        let properties = PlanProperties::new(
            EquivalenceProperties::new(sink_schema()),
            Partitioning::UnknownPartitioning(input.output_partitioning().partition_count()),
            EmissionType::Final,
            Boundedness::Bounded,
        );
        Self {
            input,
            dir,
            properties: Arc::new(properties),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

fn sink_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("bucket", DataType::UInt32, false),
        Field::new("rows", DataType::UInt64, false),
    ]))
}

impl DisplayAs for BucketSinkExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "BucketSinkExec: dir={}", self.dir.display())
    }
}

impl ExecutionPlan for BucketSinkExec {
    fn name(&self) -> &'static str {
        "BucketSinkExec"
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
                "BucketSinkExec takes exactly one child".to_string(),
            ));
        }
        Ok(Arc::new(Self::new(
            children.swap_remove(0),
            self.dir.clone(),
        )))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let runtime = context.runtime_env();
        let mut input = self.input.execute(partition, context)?;
        let schema = self.input.schema();
        let path = bucket_file(&self.dir, partition);
        let dir = self.dir.clone();
        let written = futures::stream::once(async move {
            let rows = match s3_object(&path)? {
                // A bucket in an object store: written whole, then put as one object.
                Some((store_url, object)) => {
                    let mut writer =
                        ArrowWriter::try_new(Vec::new(), schema, Some(writer_properties()))?;
                    let rows = write_all(&mut input, |batch| Ok(writer.write(batch)?)).await?;
                    let bytes = writer.into_inner()?;
                    runtime
                        .object_store(&store_url)?
                        .put(&object, bytes.into())
                        .await
                        .map_err(|e| DataFusionError::ObjectStore(Box::new(e)))?;
                    rows
                }
                None => {
                    std::fs::create_dir_all(&dir).map_err(|e| io_error(&dir, e))?;
                    let file = File::create(&path).map_err(|e| io_error(&path, e))?;
                    let mut writer = ArrowWriter::try_new(file, schema, Some(writer_properties()))?;
                    let rows = write_all(&mut input, |batch| Ok(writer.write(batch)?)).await?;
                    writer.close()?;
                    rows
                }
            };
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

/// Writes every batch of `input`; returns the rows written.
async fn write_all(
    input: &mut SendableRecordBatchStream,
    mut write: impl FnMut(&RecordBatch) -> Result<()>,
) -> Result<u64> {
    let mut rows = 0u64;
    while let Some(batch) = input.next().await {
        let batch = batch?;
        rows += batch.num_rows() as u64;
        write(&batch)?;
    }
    Ok(rows)
}

/// The store and object of an `s3://bucket/key` path; `None` for a local path.
fn s3_object(path: &Path) -> Result<Option<(ObjectStoreUrl, ObjectPath)>> {
    let location = path.to_string_lossy();
    let Some(rest) = location.strip_prefix("s3:/") else {
        return Ok(None);
    };
    // A path keeps one slash of `s3://`.
    let rest = rest.trim_start_matches('/');
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    let store_url = ObjectStoreUrl::parse(format!("s3://{bucket}"))?;
    Ok(Some((store_url, ObjectPath::from(key))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;

    #[test]
    fn bucket_numbers_come_from_file_names() {
        assert_eq!(bucket_of("bucket-00007.parquet"), Some(7));
        assert_eq!(bucket_of("bucket-00012-part-1.parquet"), Some(12));
        assert_eq!(bucket_of("part-0.parquet"), None);
    }

    #[test]
    fn rows_land_in_the_bucket_of_their_key_and_the_spec_is_recorded() {
        let dir = std::env::temp_dir().join(format!("tally-buckets-{}", std::process::id()));
        let schema = Arc::new(Schema::new(vec![Field::new("k", DataType::Int64, false)]));
        let spec = BucketSpec::new(vec!["k".to_string()], 4).unwrap();
        let mut writer =
            BucketedParquetWriter::try_new(&dir, schema.clone(), spec.clone()).unwrap();
        let batch = |keys: Vec<i64>| {
            RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(keys))]).unwrap()
        };
        writer.write(batch((0..100).collect())).unwrap();
        writer.write(batch((0..100).collect())).unwrap();
        writer.finish().unwrap();
        assert_eq!(BucketSpec::read(&dir).unwrap(), Some(spec));

        // Every key sits in exactly one bucket file, twice.
        let mut seen = std::collections::BTreeMap::new();
        for bucket in 0..4 {
            let file = File::open(bucket_file(&dir, bucket)).unwrap();
            let reader =
                parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(file, 1024)
                    .unwrap();
            for batch in reader {
                let batch = batch.unwrap();
                let keys = batch
                    .column(0)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .unwrap();
                for key in keys.values() {
                    let entry = seen.entry(*key).or_insert((bucket, 0));
                    assert_eq!(entry.0, bucket, "key {key} in two buckets");
                    entry.1 += 1;
                }
            }
        }
        assert_eq!(seen.len(), 100);
        assert!(seen.values().all(|(_, n)| *n == 2));
        std::fs::remove_dir_all(&dir).ok();
    }
}
