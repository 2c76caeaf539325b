//! A Kafka topic as a table: declared columns read from each record's value (JSON or CSV),
//! then `_key`, `_partition`, `_offset` and `_timestamp`. Every scan fixes the offsets it
//! reads when it is planned: a consistent snapshot of the topic, cut into tasks of at most
//! `tally.kafka_max_records_per_task` records.

use std::sync::Arc;

use arrow::datatypes::{Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::error::Result;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use tally_common::kafka::{KafkaOptions, KafkaScanExec, KafkaTopic, slices, with_metadata_columns};

use crate::options::kafka_max_records_per_task;

#[derive(Debug)]
pub(crate) struct KafkaTable {
    topic: KafkaTopic,
    options: KafkaOptions,
    schema: SchemaRef,
}

impl KafkaTable {
    /// The table over `topic`, once the brokers have shown that the topic exists.
    pub(crate) async fn open(
        topic: KafkaTopic,
        options: KafkaOptions,
        value_columns: &Schema,
    ) -> Result<Self> {
        let schema = with_metadata_columns(value_columns)?;
        let client = topic.client().await?;
        topic.partitions(&client).await?;
        Ok(Self {
            topic,
            options,
            schema,
        })
    }
}

#[async_trait]
impl TableProvider for KafkaTable {
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
        let max_records = kafka_max_records_per_task(state.config_options());
        let ranges = self.topic.watermarks().await?;
        let projection = match projection {
            Some(columns) => columns.clone(),
            None => (0..self.schema.fields().len()).collect(),
        };
        Ok(Arc::new(KafkaScanExec::try_new(
            self.topic.clone(),
            self.options,
            self.schema.clone(),
            projection,
            slices(&ranges, max_records),
        )?))
    }
}
