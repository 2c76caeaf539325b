//! `tally profile`: per column, its NULL fraction, approximate distinct count, min and max,
//! and for numeric columns its quartiles, all from one aggregate query (one job).
//!
//! The column's type decides what applies:
//! - NULLs: every column.
//! - `approx_distinct` (HyperLogLog): integers, decimals, strings, binaries, dates, times,
//!   timestamps, booleans; floats through their text form (DataFusion's `approx_distinct`
//!   takes no floats; distinct floats have distinct shortest texts); not nested types.
//! - min/max: numbers, strings, dates, times, timestamps, booleans (shown as text).
//! - quartiles (`approx_percentile_cont`, a t-digest) of numbers, as doubles.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, StringArray};
use arrow::datatypes::{DataType, Schema};
use datafusion::scalar::ScalarValue;
use serde::Serialize;

use super::query::{ROW_COUNT, quote_ident, select};
use super::results::{answer_row, as_i64, text_table};
use crate::client::Client;
use crate::error::ClientError;

pub const QUANTILES: [f64; 3] = [0.25, 0.5, 0.75];

#[derive(Debug, Clone, Serialize)]
pub struct ColumnProfile {
    pub name: String,
    pub data_type: String,
    pub nulls: i64,
    /// NULL rows over all rows; None for an empty table.
    pub null_fraction: Option<f64>,
    pub approx_distinct: Option<u64>,
    pub min: Option<String>,
    pub max: Option<String>,
    /// The 25th, 50th and 75th percentiles, for numeric columns.
    pub quartiles: Option<[Option<f64>; 3]>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Profile {
    pub table: String,
    pub job_id: String,
    pub rows: i64,
    pub elapsed_ms: u64,
    pub columns: Vec<ColumnProfile>,
}

/// Where one column's aggregates are in the answer.
#[derive(Default)]
struct Slots {
    nulls: usize,
    distinct: Option<usize>,
    min_max: Option<(usize, usize)>,
    quartiles: Option<usize>,
}

fn orderable(data_type: &DataType) -> bool {
    data_type.is_numeric()
        || matches!(
            data_type,
            DataType::Utf8
                | DataType::LargeUtf8
                | DataType::Utf8View
                | DataType::Date32
                | DataType::Date64
                | DataType::Timestamp(..)
                | DataType::Time32(_)
                | DataType::Time64(_)
                | DataType::Boolean
        )
}

fn distinct_input(column: &str, data_type: &DataType) -> Option<String> {
    match data_type {
        DataType::Float16 | DataType::Float32 | DataType::Float64 => {
            Some(format!("CAST({column} AS VARCHAR)"))
        }
        t if orderable(t) || matches!(t, DataType::Binary | DataType::LargeBinary) => {
            Some(column.to_string())
        }
        _ => None,
    }
}

/// The profile query of a table with `schema`, and where each column's figures are.
fn profile_query(table: &str, schema: &Schema) -> (String, Vec<Slots>) {
    let mut items = vec!["count(*)".to_string()];
    let mut slots = Vec::new();
    for field in schema.fields() {
        let c = quote_ident(field.name());
        let mut slot = Slots {
            nulls: items.len(),
            ..Default::default()
        };
        items.push(format!("count(*) FILTER (WHERE {c} IS NULL)"));
        if let Some(input) = distinct_input(&c, field.data_type()) {
            slot.distinct = Some(items.len());
            items.push(format!("approx_distinct({input})"));
        }
        if orderable(field.data_type()) {
            slot.min_max = Some((items.len(), items.len() + 1));
            items.push(format!("CAST(min({c}) AS VARCHAR)"));
            items.push(format!("CAST(max({c}) AS VARCHAR)"));
        }
        if field.data_type().is_numeric() {
            slot.quartiles = Some(items.len());
            for q in QUANTILES {
                items.push(format!(
                    "approx_percentile_cont({q}) WITHIN GROUP (ORDER BY CAST({c} AS DOUBLE))"
                ));
            }
        }
        slots.push(slot);
    }
    (select(table, &items), slots)
}

fn text(value: &ScalarValue) -> Option<String> {
    match value {
        ScalarValue::Utf8(v) | ScalarValue::LargeUtf8(v) | ScalarValue::Utf8View(v) => v.clone(),
        other if other.is_null() => None,
        other => Some(other.to_string()),
    }
}

fn float(value: &ScalarValue) -> Option<f64> {
    match value {
        ScalarValue::Float64(v) => *v,
        _ => None,
    }
}

/// Profiles `table` (whose columns are `schema`'s) in one job with the session `settings`.
pub async fn profile_table(
    client: &Client,
    table: &str,
    schema: &Schema,
    settings: &BTreeMap<String, String>,
) -> Result<Profile, ClientError> {
    let (sql, slots) = profile_query(table, schema);
    let result = client.sql_with_settings(&sql, settings).await?;
    let row = answer_row(&result.batches)?;
    let rows = as_i64(&row[ROW_COUNT])
        .ok_or_else(|| ClientError::Fetch("the profile's row count is missing".to_string()))?;
    let columns = schema
        .fields()
        .iter()
        .zip(slots)
        .map(|(field, slot)| {
            let nulls = as_i64(&row[slot.nulls]).unwrap_or_default();
            ColumnProfile {
                name: field.name().clone(),
                data_type: field.data_type().to_string(),
                nulls,
                null_fraction: (rows > 0).then(|| nulls as f64 / rows as f64),
                approx_distinct: slot.distinct.and_then(|i| match &row[i] {
                    ScalarValue::UInt64(v) => *v,
                    _ => None,
                }),
                min: slot.min_max.and_then(|(min, _)| text(&row[min])),
                max: slot.min_max.and_then(|(_, max)| text(&row[max])),
                quartiles: slot
                    .quartiles
                    .map(|i| [float(&row[i]), float(&row[i + 1]), float(&row[i + 2])]),
            }
        })
        .collect();
    Ok(Profile {
        table: table.to_string(),
        job_id: result.metrics.job_id.clone(),
        rows,
        elapsed_ms: result.metrics.elapsed_ms,
        columns,
    })
}

/// The profile as a table, a row per column.
pub fn profile_table_text(profile: &Profile) -> Result<String, ClientError> {
    let cols = &profile.columns;
    let column = |f: &dyn Fn(&ColumnProfile) -> String| -> ArrayRef {
        Arc::new(StringArray::from(cols.iter().map(f).collect::<Vec<_>>()))
    };
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    let quartile = |c: &ColumnProfile, i: usize| {
        c.quartiles
            .and_then(|q| q[i])
            .map(|v| v.to_string())
            .unwrap_or_default()
    };
    text_table(
        &[
            "column",
            "type",
            "nulls",
            "null_fraction",
            "approx_distinct",
            "min",
            "max",
            "p25",
            "p50",
            "p75",
        ],
        vec![
            column(&|c| c.name.clone()),
            column(&|c| c.data_type.clone()),
            column(&|c| c.nulls.to_string()),
            column(&|c| {
                c.null_fraction
                    .map(|f| format!("{f:.4}"))
                    .unwrap_or_default()
            }),
            column(&|c| c.approx_distinct.map(|d| d.to_string()).unwrap_or_default()),
            column(&|c| opt(&c.min)),
            column(&|c| opt(&c.max)),
            column(&|c| quartile(c, 0)),
            column(&|c| quartile(c, 1)),
            column(&|c| quartile(c, 2)),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::Field;

    #[test]
    fn the_column_type_decides_the_aggregates() {
        let schema = Schema::new(vec![
            Field::new("n", DataType::Int64, true),
            Field::new("x", DataType::Float64, true),
            Field::new("s", DataType::Utf8, true),
            Field::new("l", DataType::new_list(DataType::Int64, true), true),
        ]);
        let (sql, _) = profile_query("t", &schema);
        assert!(sql.contains("approx_distinct(\"n\")"), "{sql}");
        assert!(
            sql.contains("approx_distinct(CAST(\"x\" AS VARCHAR))"),
            "{sql}"
        );
        assert!(sql.contains("ORDER BY CAST(\"x\" AS DOUBLE)"), "{sql}");
        assert!(sql.contains("CAST(min(\"s\") AS VARCHAR)"), "{sql}");
        assert!(!sql.contains("ORDER BY CAST(\"s\""), "{sql}");
        assert!(!sql.contains("min(\"l\")") && !sql.contains("approx_distinct(\"l\")"));
        assert!(sql.contains("FILTER (WHERE \"l\" IS NULL)"));
    }
}
