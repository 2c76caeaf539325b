//! Printing answers (table, CSV, JSON) and the job's figures.

use std::io::Write;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;

use crate::client::JobMetrics;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Table,
    Csv,
    Json,
}

pub fn write_batches(
    out: &mut dyn Write,
    format: OutputFormat,
    schema: &SchemaRef,
    batches: &[RecordBatch],
) -> Result<(), ArrowError> {
    if schema.fields().is_empty() {
        // DDL: nothing to print.
        return Ok(());
    }
    match format {
        OutputFormat::Table => {
            let table =
                arrow::util::pretty::pretty_format_batches_with_schema(schema.clone(), batches)?;
            writeln!(out, "{table}")?;
        }
        OutputFormat::Csv => {
            if batches.is_empty() {
                let header: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
                writeln!(out, "{}", header.join(","))?;
            } else {
                let mut writer = arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(&mut *out);
                for batch in batches {
                    writer.write(batch)?;
                }
            }
        }
        OutputFormat::Json => {
            let mut writer = arrow::json::ArrayWriter::new(&mut *out);
            for batch in batches {
                writer.write(batch)?;
            }
            writer.finish()?;
            writeln!(out)?;
        }
    }
    Ok(())
}

/// A short account of what the job moved, for a person (printed on stderr).
pub fn summarize(metrics: &JobMetrics, rows: usize) -> String {
    let mut text = format!(
        "{rows} rows in {} ms (job {}): shuffled {} in {} rows between workers; answer {}\n",
        metrics.elapsed_ms,
        metrics.job_id,
        human_bytes(metrics.shuffle_bytes),
        metrics.shuffle_rows,
        human_bytes(metrics.result_bytes),
    );
    for stage in &metrics.stages {
        let inputs = if stage.input_stages.is_empty() {
            "scan".to_string()
        } else {
            let ids: Vec<String> = stage.input_stages.iter().map(|s| s.to_string()).collect();
            format!("reads {}", ids.join(","))
        };
        let spilled = if stage.spilled_bytes > 0 {
            format!(", spilled {} to disk", human_bytes(stage.spilled_bytes))
        } else {
            String::new()
        };
        let malformed = if stage.malformed_records > 0 {
            format!(", skipped {} malformed records", stage.malformed_records)
        } else {
            String::new()
        };
        text.push_str(&format!(
            "  stage {} ({inputs}; {} tasks) -> {}: {} rows, shuffled {} ({} rows){spilled}{malformed}\n",
            stage.stage_id,
            stage.tasks,
            stage.output,
            stage.output_rows,
            human_bytes(stage.shuffle_bytes),
            stage.shuffle_rows,
        ));
    }
    text
}

/// Bytes in binary units with the exact count beside them: `2.4 MiB (2500000 B)`.
pub fn human_bytes(bytes: u64) -> String {
    let short = tally_common::binary_bytes(bytes);
    if bytes < 1024 {
        short
    } else {
        format!("{short} ({bytes} B)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    fn sample() -> (SchemaRef, Vec<RecordBatch>) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("name", DataType::Utf8, false),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(vec![1, 2])),
                Arc::new(StringArray::from(vec!["a", "b,c"])),
            ],
        )
        .unwrap();
        (schema, vec![batch])
    }

    fn render(format: OutputFormat, batches: &[RecordBatch]) -> String {
        let (schema, _) = sample();
        let mut out = Vec::new();
        write_batches(&mut out, format, &schema, batches).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn csv_is_a_header_then_rows_with_quoting() {
        let (_, batches) = sample();
        assert_eq!(
            render(OutputFormat::Csv, &batches),
            "k,name\n1,a\n2,\"b,c\"\n"
        );
        assert_eq!(render(OutputFormat::Csv, &[]), "k,name\n");
    }

    #[test]
    fn json_is_an_array_of_objects() {
        let (_, batches) = sample();
        let json: serde_json::Value =
            serde_json::from_str(&render(OutputFormat::Json, &batches)).unwrap();
        assert_eq!(json[1]["name"], "b,c");
        assert_eq!(json.as_array().unwrap().len(), 2);
    }

    #[test]
    fn human_bytes_keeps_the_exact_count() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(2048), "2.0 KiB (2048 B)");
    }
}
