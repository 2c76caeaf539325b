//! datafusion-proto extension codec for Tally's shuffle nodes, so stage plans travel from the
//! coordinator to the workers as ordinary datafusion-proto bytes.

use std::sync::Arc;

use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{AggregateUDF, ScalarUDF, WindowUDF};
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::bytes::{
    physical_plan_from_bytes_with_extension_codec, physical_plan_to_bytes_with_extension_codec,
};
use datafusion_proto::physical_plan::from_proto::parse_protobuf_partitioning;
use datafusion_proto::physical_plan::to_proto::serialize_partitioning;
use datafusion_proto::physical_plan::{
    PhysicalExtensionCodec, PhysicalPlanDecodeContext, PhysicalProtoConverterExtension,
};
use datafusion_proto::protobuf;
use prost::Message;

use tally_proto::plan as pb;
use tally_proto::plan::tally_plan_node::Node;

use crate::bucketing::BucketSinkExec;
use crate::distinct::udaf_by_name;
use crate::hive_sink::HivePartitionSinkExec;
use crate::ids::{JobId, StageId};
use crate::ipc::{schema_from_bytes, schema_to_bytes};
use crate::kafka::{
    KafkaOptions, KafkaScanExec, KafkaTopic, OffsetRange, OnMalformed, ValueFormat,
};
use crate::shuffle_reader::{ReadMode, ShuffleReaderExec};
use crate::shuffle_writer::ShuffleWriterExec;
use crate::spark::{is_spark_udaf, is_spark_udf, is_spark_udwf, spark_udaf, spark_udf, spark_udwf};
use crate::spool::SpoolLocation;

/// The definition a Spark function travels with: the worker takes the function of that name
/// from `crate::spark`, not DataFusion's of the same name from its registry.
const SPARK_FUNCTION: &[u8] = b"spark";

#[derive(Debug, Default)]
pub struct TallyCodec;

pub fn encode_plan(plan: Arc<dyn ExecutionPlan>) -> Result<Vec<u8>> {
    Ok(physical_plan_to_bytes_with_extension_codec(plan, &TallyCodec)?.to_vec())
}

pub fn decode_plan(bytes: &[u8], context: &TaskContext) -> Result<Arc<dyn ExecutionPlan>> {
    physical_plan_from_bytes_with_extension_codec(bytes, context, &TallyCodec)
}

impl PhysicalExtensionCodec for TallyCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let node = pb::TallyPlanNode::decode(buf)
            .map_err(|e| decode_error(format!("not a Tally plan node: {e}")))?
            .node
            .ok_or_else(|| decode_error("empty Tally plan node".to_string()))?;
        match node {
            Node::Writer(writer) => {
                let [input] = inputs else {
                    return Err(decode_error(
                        "ShuffleWriterExec needs one input".to_string(),
                    ));
                };
                let partitioning = if writer.partitioning.is_empty() {
                    None
                } else {
                    let proto = protobuf::Partitioning::decode(writer.partitioning.as_slice())
                        .map_err(|e| decode_error(format!("partitioning: {e}")))?;
                    let decode_ctx = PhysicalPlanDecodeContext::new(ctx, self);
                    parse_protobuf_partitioning(
                        Some(&proto),
                        &decode_ctx,
                        &input.schema(),
                        proto_converter,
                    )?
                };
                Ok(Arc::new(ShuffleWriterExec::new(
                    input.clone(),
                    JobId::from(writer.job_id),
                    StageId(writer.stage_id),
                    partitioning,
                )))
            }
            Node::BucketSink(sink) => {
                let [input] = inputs else {
                    return Err(decode_error("BucketSinkExec needs one input".to_string()));
                };
                Ok(Arc::new(BucketSinkExec::new(
                    input.clone(),
                    sink.dir.into(),
                )))
            }
            Node::HivePartitionSink(sink) => {
                let [input] = inputs else {
                    return Err(decode_error(
                        "HivePartitionSinkExec needs one input".to_string(),
                    ));
                };
                Ok(Arc::new(HivePartitionSinkExec::try_new(
                    input.clone(),
                    sink.dir.into(),
                    sink.partition_columns,
                )?))
            }
            Node::KafkaScan(scan) => Ok(Arc::new(kafka_scan_from_proto(scan)?)),
            Node::Reader(reader) => {
                let schema = schema_from_bytes(&reader.schema)?;
                let mode = ReadMode {
                    compression: reader.compression().into(),
                    broadcast: reader.broadcast,
                };
                let partitions = reader
                    .partitions
                    .into_iter()
                    .map(|p| p.sources.into_iter().map(SpoolLocation::try_from).collect())
                    .collect::<Result<Vec<_>>>()?;
                Ok(Arc::new(ShuffleReaderExec::new(
                    StageId(reader.stage_id),
                    schema,
                    partitions,
                    mode,
                )))
            }
        }
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<()> {
        let node = if let Some(writer) = node.downcast_ref::<ShuffleWriterExec>() {
            let partitioning = match writer.output_partitioning() {
                Some(p) => serialize_partitioning(p, self, proto_converter)?.encode_to_vec(),
                None => Vec::new(),
            };
            Node::Writer(pb::ShuffleWriterNode {
                job_id: writer.job_id().to_string(),
                stage_id: writer.stage_id().0,
                partitioning,
            })
        } else if let Some(reader) = node.downcast_ref::<ShuffleReaderExec>() {
            Node::Reader(pb::ShuffleReaderNode {
                stage_id: reader.stage_id().0,
                schema: schema_to_bytes(&reader.schema())?,
                partitions: reader
                    .partitions()
                    .iter()
                    .map(|sources| pb::ReaderPartition {
                        sources: sources
                            .iter()
                            .map(|s| s.to_proto(reader.mode().compression))
                            .collect(),
                    })
                    .collect(),
                compression: pb::Compression::from(reader.mode().compression) as i32,
                broadcast: reader.mode().broadcast,
            })
        } else if let Some(scan) = node.downcast_ref::<KafkaScanExec>() {
            Node::KafkaScan(kafka_scan_to_proto(scan)?)
        } else if let Some(sink) = node.downcast_ref::<BucketSinkExec>() {
            Node::BucketSink(pb::BucketSinkNode {
                dir: sink.dir().to_string_lossy().to_string(),
            })
        } else if let Some(sink) = node.downcast_ref::<HivePartitionSinkExec>() {
            Node::HivePartitionSink(pb::HivePartitionSinkNode {
                dir: sink.dir().to_string_lossy().to_string(),
                partition_columns: sink.partition_columns().to_vec(),
            })
        } else {
            return Err(DataFusionError::NotImplemented(format!(
                "Tally cannot send {} to a worker",
                node.name()
            )));
        };
        pb::TallyPlanNode { node: Some(node) }
            .encode(buf)
            .map_err(|e| DataFusionError::Internal(format!("encoding Tally plan node: {e}")))
    }

    fn try_encode_udf(&self, node: &ScalarUDF, buf: &mut Vec<u8>) -> Result<()> {
        if is_spark_udf(node) {
            buf.extend_from_slice(SPARK_FUNCTION);
        }
        Ok(())
    }

    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> Result<Arc<ScalarUDF>> {
        if buf == SPARK_FUNCTION {
            return spark_udf(name)
                .ok_or_else(|| decode_error(format!("no Spark function named {name}")));
        }
        Err(decode_error(format!(
            "no function named {name} on this worker"
        )))
    }

    fn try_encode_udaf(&self, node: &AggregateUDF, buf: &mut Vec<u8>) -> Result<()> {
        if is_spark_udaf(node) {
            buf.extend_from_slice(SPARK_FUNCTION);
        }
        Ok(())
    }

    /// Tally's aggregate functions travel by name (an empty definition): workers build them
    /// from the name here, with nothing registered in their sessions.
    fn try_decode_udaf(&self, name: &str, buf: &[u8]) -> Result<Arc<AggregateUDF>> {
        if buf == SPARK_FUNCTION {
            return spark_udaf(name)
                .ok_or_else(|| decode_error(format!("no Spark aggregate function named {name}")));
        }
        udaf_by_name(name).ok_or_else(|| {
            decode_error(format!("no aggregate function named {name} on this worker"))
        })
    }

    fn try_encode_udwf(&self, node: &WindowUDF, buf: &mut Vec<u8>) -> Result<()> {
        if is_spark_udwf(node) {
            buf.extend_from_slice(SPARK_FUNCTION);
        }
        Ok(())
    }

    fn try_decode_udwf(&self, name: &str, buf: &[u8]) -> Result<Arc<WindowUDF>> {
        if buf == SPARK_FUNCTION {
            return spark_udwf(name)
                .ok_or_else(|| decode_error(format!("no Spark window function named {name}")));
        }
        Err(decode_error(format!(
            "no window function named {name} on this worker"
        )))
    }
}

fn kafka_scan_to_proto(scan: &KafkaScanExec) -> Result<pb::KafkaScanNode> {
    let options = scan.options();
    Ok(pb::KafkaScanNode {
        brokers: scan.topic().brokers.clone(),
        topic: scan.topic().topic.clone(),
        value_format: options.format_name().to_string(),
        skip_malformed: options.on_malformed == OnMalformed::Skip,
        table_schema: schema_to_bytes(scan.table_schema())?,
        projection: scan.projection().iter().map(|&i| i as u32).collect(),
        slices: scan
            .slices()
            .iter()
            .map(|s| pb::KafkaSlice {
                partition: s.partition,
                start: s.start,
                end: s.end,
            })
            .collect(),
    })
}

fn kafka_scan_from_proto(scan: pb::KafkaScanNode) -> Result<KafkaScanExec> {
    let format = match scan.value_format.as_str() {
        "json" => ValueFormat::Json,
        "csv" => ValueFormat::Csv,
        other => return Err(decode_error(format!("Kafka value format {other}"))),
    };
    let on_malformed = if scan.skip_malformed {
        OnMalformed::Skip
    } else {
        OnMalformed::Fail
    };
    KafkaScanExec::try_new(
        KafkaTopic {
            brokers: scan.brokers,
            topic: scan.topic,
        },
        KafkaOptions {
            format,
            on_malformed,
        },
        schema_from_bytes(&scan.table_schema)?,
        scan.projection.into_iter().map(|i| i as usize).collect(),
        scan.slices
            .into_iter()
            .map(|s| OffsetRange {
                partition: s.partition,
                start: s.start,
                end: s.end,
            })
            .collect(),
    )
}

fn decode_error(message: String) -> DataFusionError {
    DataFusionError::Internal(format!("decoding a stage plan: {message}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::physical_plan::{ExecutionPlanProperties, collect_partitioned};
    use datafusion::prelude::{ParquetReadOptions, SessionContext};

    #[tokio::test]
    async fn scan_partitions_survive_the_round_trip() {
        let dir = std::env::temp_dir().join(format!("tally-codec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ctx = SessionContext::new();
        for i in 0..3 {
            let df = ctx
                .sql(&format!(
                    "SELECT * FROM (VALUES ({i}), ({i}), ({i})) AS t(x)"
                ))
                .await
                .unwrap();
            df.write_parquet(
                dir.join(format!("p{i}.parquet")).to_str().unwrap(),
                Default::default(),
                None,
            )
            .await
            .unwrap();
        }
        ctx.register_parquet("t", dir.to_str().unwrap(), ParquetReadOptions::default())
            .await
            .unwrap();
        let plan = ctx
            .sql("SELECT x FROM t")
            .await
            .unwrap()
            .create_physical_plan()
            .await
            .unwrap();
        let decoded = decode_plan(&encode_plan(plan.clone()).unwrap(), &ctx.task_ctx()).unwrap();
        assert_eq!(
            decoded.output_partitioning().partition_count(),
            plan.output_partitioning().partition_count()
        );
        let rows = |parts: Vec<Vec<arrow::array::RecordBatch>>| -> Vec<usize> {
            parts
                .iter()
                .map(|p| p.iter().map(|b| b.num_rows()).sum())
                .collect()
        };
        let original = rows(collect_partitioned(plan, ctx.task_ctx()).await.unwrap());
        let round_trip = rows(collect_partitioned(decoded, ctx.task_ctx()).await.unwrap());
        assert_eq!(original.iter().sum::<usize>(), 9);
        assert_eq!(round_trip, original);
        std::fs::remove_dir_all(&dir).ok();
    }
}
