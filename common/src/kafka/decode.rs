//! Record values into Arrow rows, with the record's key, partition, offset and timestamp as
//! the metadata columns every Kafka table has. A value that is not exactly one row fails the
//! scan with its partition and offset, or is skipped and counted, as the table says.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, Int32Array, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use arrow::compute::concat_batches;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::error::{DataFusionError, Result};
use rskafka::record::RecordAndOffset;

use super::{OnMalformed, ValueFormat};

/// The columns a Kafka table adds after the value's columns (ClickHouse's names).
pub const METADATA_COLUMNS: [&str; 4] = ["_key", "_partition", "_offset", "_timestamp"];

/// The table's schema: the value columns, then the metadata columns.
pub fn with_metadata_columns(value: &Schema) -> Result<SchemaRef> {
    if let Some(clash) = value
        .fields()
        .iter()
        .find(|f| METADATA_COLUMNS.contains(&f.name().as_str()))
    {
        return Err(DataFusionError::Plan(format!(
            "column {} is a Kafka table's own metadata column ({}): rename it",
            clash.name(),
            METADATA_COLUMNS.join(", ")
        )));
    }
    let mut fields: Vec<Field> = value.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.extend([
        Field::new("_key", DataType::Utf8, true),
        Field::new("_partition", DataType::Int32, false),
        Field::new("_offset", DataType::Int64, false),
        Field::new(
            "_timestamp",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
    ]);
    Ok(Arc::new(Schema::new(fields)))
}

/// A record whose value is not one row of the table: the data's fault, so no retry passes.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct MalformedRecord(pub String);

/// Decodes fetched records of one partition into rows of the table's schema.
#[derive(Debug, Clone)]
pub struct RecordDecoder {
    /// The value columns only.
    value_schema: SchemaRef,
    /// The value columns and the metadata columns.
    table_schema: SchemaRef,
    format: ValueFormat,
    on_malformed: OnMalformed,
    topic: String,
}

impl RecordDecoder {
    pub fn new(
        table_schema: SchemaRef,
        format: ValueFormat,
        on_malformed: OnMalformed,
        topic: &str,
    ) -> Self {
        let values = table_schema.fields().len() - METADATA_COLUMNS.len();
        let value_schema = Arc::new(Schema::new(table_schema.fields()[..values].to_vec()));
        Self {
            value_schema,
            table_schema,
            format,
            on_malformed,
            topic: topic.to_string(),
        }
    }

    /// The rows of `records` (all of one partition) and how many malformed ones were skipped.
    pub fn decode(
        &self,
        partition: i32,
        records: &[RecordAndOffset],
    ) -> Result<(RecordBatch, usize)> {
        let values: Vec<&[u8]> = records.iter().map(|r| self.value_of(r)).collect();
        // The whole fetch at once; one record at a time only to find the malformed ones.
        let (rows, kept) = match self.decode_values(&values) {
            Ok(batch) if batch.num_rows() == values.len() => (batch, (0..records.len()).collect()),
            _ => self.decode_one_by_one(partition, records, &values)?,
        };
        let kept_records: Vec<&RecordAndOffset> = kept.iter().map(|&i| &records[i]).collect();
        let mut columns: Vec<ArrayRef> = rows.columns().to_vec();
        columns.push(Arc::new(StringArray::from_iter(kept_records.iter().map(
            |r| {
                r.record
                    .key
                    .as_ref()
                    .map(|k| String::from_utf8_lossy(k).into_owned())
            },
        ))));
        columns.push(Arc::new(Int32Array::from(vec![
            partition;
            kept_records.len()
        ])));
        columns.push(Arc::new(Int64Array::from_iter_values(
            kept_records.iter().map(|r| r.offset),
        )));
        columns.push(Arc::new(TimestampMillisecondArray::from_iter_values(
            kept_records
                .iter()
                .map(|r| r.record.timestamp.timestamp_millis()),
        )));
        let batch = RecordBatch::try_new(self.table_schema.clone(), columns)?;
        Ok((batch, records.len() - kept.len()))
    }

    /// A record without a value (a tombstone) is a row of NULLs in a JSON table; in a CSV
    /// table it is malformed (an empty line is no row).
    fn value_of<'a>(&self, record: &'a RecordAndOffset) -> &'a [u8] {
        match (&record.record.value, self.format) {
            (Some(value), _) => value,
            (None, ValueFormat::Json) => b"{}",
            (None, ValueFormat::Csv) => b"",
        }
    }

    fn decode_one_by_one(
        &self,
        partition: i32,
        records: &[RecordAndOffset],
        values: &[&[u8]],
    ) -> Result<(RecordBatch, Vec<usize>)> {
        let mut batches = Vec::new();
        let mut kept = Vec::new();
        for (i, value) in values.iter().enumerate() {
            let decoded = self
                .decode_values(&[value])
                .and_then(|batch| match batch.num_rows() {
                    1 => Ok(batch),
                    n => Err(DataFusionError::Execution(format!(
                        "the value holds {n} rows, not 1"
                    ))),
                });
            match (decoded, self.on_malformed) {
                (Ok(batch), _) => {
                    batches.push(batch);
                    kept.push(i);
                }
                (Err(_), OnMalformed::Skip) => {}
                (Err(error), OnMalformed::Fail) => {
                    return Err(DataFusionError::External(Box::new(MalformedRecord(
                        format!(
                            "malformed record in Kafka topic '{}' partition {partition} at offset {}: \
                         {} (the table's option on_malformed = 'skip' skips and counts such \
                         records)",
                            self.topic,
                            records[i].offset,
                            error.to_string().lines().next().unwrap_or_default()
                        ),
                    ))));
                }
            }
        }
        let batch = concat_batches(&self.value_schema, &batches)?;
        Ok((batch, kept))
    }

    /// The rows of the values, one line each.
    fn decode_values(&self, values: &[&[u8]]) -> Result<RecordBatch> {
        let mut text = Vec::with_capacity(values.iter().map(|v| v.len() + 1).sum());
        for value in values {
            text.extend_from_slice(value);
            text.push(b'\n');
        }
        let batch_size = values.len().max(1);
        let batch = match self.format {
            ValueFormat::Json => {
                let mut decoder = arrow::json::ReaderBuilder::new(self.value_schema.clone())
                    .with_batch_size(batch_size)
                    .build_decoder()?;
                decode_all(&text, |buf| decoder.decode(buf))?;
                decoder.flush()?
            }
            ValueFormat::Csv => {
                let mut decoder = arrow::csv::ReaderBuilder::new(self.value_schema.clone())
                    .with_header(false)
                    .with_batch_size(batch_size)
                    .build_decoder();
                decode_all(&text, |buf| decoder.decode(buf))?;
                decoder.flush()?
            }
        };
        Ok(batch.unwrap_or_else(|| RecordBatch::new_empty(self.value_schema.clone())))
    }
}

/// Feeds `text` to a decoder that takes what fits in one batch per call.
fn decode_all(
    mut text: &[u8],
    mut decode: impl FnMut(&[u8]) -> std::result::Result<usize, arrow::error::ArrowError>,
) -> Result<()> {
    while !text.is_empty() {
        let read = decode(text)?;
        if read == 0 {
            return Err(DataFusionError::Execution(
                "more rows than records in one fetch".to_string(),
            ));
        }
        text = &text[read..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::AsArray;
    use arrow::datatypes::Int64Type;
    use rskafka::record::Record;

    fn record(offset: i64, value: &str) -> RecordAndOffset {
        RecordAndOffset {
            record: Record {
                key: Some(b"k".to_vec()),
                value: Some(value.as_bytes().to_vec()),
                headers: Default::default(),
                timestamp: chrono::DateTime::from_timestamp_millis(1_700_000_000_000).unwrap(),
            },
            offset,
        }
    }

    fn decoder(format: ValueFormat, on_malformed: OnMalformed) -> RecordDecoder {
        let value = Schema::new(vec![
            Field::new("ad", DataType::Int64, true),
            Field::new("country", DataType::Utf8, true),
        ]);
        RecordDecoder::new(
            with_metadata_columns(&value).unwrap(),
            format,
            on_malformed,
            "clicks",
        )
    }

    #[test]
    fn json_values_become_rows_with_metadata() {
        let records = [
            record(7, r#"{"ad": 1, "country": "FR"}"#),
            record(8, r#"{"ad": 2}"#),
        ];
        let (batch, skipped) = decoder(ValueFormat::Json, OnMalformed::Fail)
            .decode(3, &records)
            .unwrap();
        assert_eq!(skipped, 0);
        assert_eq!(batch.num_columns(), 6);
        assert_eq!(
            batch.column(0).as_primitive::<Int64Type>().values(),
            &[1, 2]
        );
        assert!(batch.column(1).is_null(1));
        assert_eq!(
            batch
                .column(3)
                .as_primitive::<arrow::datatypes::Int32Type>()
                .value(0),
            3
        );
        assert_eq!(
            batch.column(4).as_primitive::<Int64Type>().values(),
            &[7, 8]
        );
    }

    #[test]
    fn csv_values_become_rows() {
        let records = [record(0, "1,FR"), record(1, "2,\"D,E\"")];
        let (batch, _) = decoder(ValueFormat::Csv, OnMalformed::Fail)
            .decode(0, &records)
            .unwrap();
        assert_eq!(batch.column(1).as_string::<i32>().value(1), "D,E");
    }

    #[test]
    fn malformed_values_fail_with_their_offset_or_are_skipped() {
        let records = [
            record(10, r#"{"ad": 1}"#),
            record(11, "not json"),
            record(12, r#"{"ad": 3}{"ad": 4}"#),
            record(13, r#"{"ad": 5}"#),
        ];
        let error = decoder(ValueFormat::Json, OnMalformed::Fail)
            .decode(2, &records)
            .unwrap_err()
            .to_string();
        assert!(error.contains("partition 2 at offset 11"), "{error}");
        let (batch, skipped) = decoder(ValueFormat::Json, OnMalformed::Skip)
            .decode(2, &records)
            .unwrap();
        assert_eq!(skipped, 2);
        assert_eq!(
            batch.column(4).as_primitive::<Int64Type>().values(),
            &[10, 13]
        );
        let csv = [record(0, "1,FR"), record(1, "1,FR,extra")];
        let error = decoder(ValueFormat::Csv, OnMalformed::Fail)
            .decode(0, &csv)
            .unwrap_err();
        assert!(error.to_string().contains("offset 1"), "{error}");
    }

    #[test]
    fn metadata_column_names_are_reserved() {
        let value = Schema::new(vec![Field::new("_offset", DataType::Int64, true)]);
        assert!(
            with_metadata_columns(&value)
                .unwrap_err()
                .to_string()
                .contains("rename")
        );
    }
}
