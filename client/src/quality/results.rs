//! The check query's single answer row turned into a verdict per check, with what was
//! observed and what was expected, as a table for a person or JSON for a program.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::scalar::ScalarValue;
use serde::Serialize;

use super::expectations::{Check, Expectation, Literal};
use super::query::{CheckQuery, ROW_COUNT};
use crate::error::ClientError;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CheckResult {
    pub name: String,
    pub kind: String,
    pub observed: String,
    pub expected: String,
    pub passed: bool,
}

/// Every check of one table, from one job.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub table: String,
    pub job_id: String,
    pub rows: i64,
    pub elapsed_ms: u64,
    pub passed: bool,
    pub checks: Vec<CheckResult>,
}

impl CheckReport {
    pub fn failed(&self) -> Vec<&CheckResult> {
        self.checks.iter().filter(|c| !c.passed).collect()
    }
}

/// The single answer row, one value per column.
pub(crate) fn answer_row(batches: &[RecordBatch]) -> Result<Vec<ScalarValue>, ClientError> {
    let batch = batches
        .iter()
        .find(|b| b.num_rows() > 0)
        .ok_or_else(|| ClientError::Fetch("the check query answered no row".to_string()))?;
    batch
        .columns()
        .iter()
        .map(|column| {
            ScalarValue::try_from_array(column, 0).map_err(|e| ClientError::Fetch(e.to_string()))
        })
        .collect()
}

pub(crate) fn as_i64(value: &ScalarValue) -> Option<i64> {
    match value {
        ScalarValue::Int64(v) => *v,
        ScalarValue::Int32(v) => v.map(i64::from),
        ScalarValue::UInt64(v) => v.map(|v| v as i64),
        _ => None,
    }
}

/// A value as a person reads it: `NULL` for none.
pub(crate) fn shown(value: &ScalarValue) -> String {
    if value.is_null() {
        "NULL".to_string()
    } else {
        value.to_string()
    }
}

/// Verdicts for `checks` from the answer `row` of `query`; `now` (Unix seconds) is the time
/// freshness is measured against.
pub fn evaluate(
    checks: &[Check],
    query: &CheckQuery,
    row: &[ScalarValue],
    now: i64,
) -> Result<Vec<CheckResult>, ClientError> {
    let count = |position: usize| {
        row.get(position).and_then(as_i64).ok_or_else(|| {
            ClientError::Fetch(format!(
                "the check query's answer q{position} is not a count"
            ))
        })
    };
    let rows = count(ROW_COUNT)?;
    let mut results = Vec::new();
    for (check, positions) in checks.iter().zip(&query.positions) {
        let (observed, expected, passed) = match &check.expectation {
            Expectation::NotNull { .. } => {
                let nulls = count(positions[0])?;
                (rows_text(nulls, "NULL"), rows_text(0, "NULL"), nulls == 0)
            }
            Expectation::Unique { .. } => {
                let duplicates = rows - count(positions[0])?;
                (
                    rows_text(duplicates, "duplicate"),
                    rows_text(0, "duplicate"),
                    duplicates == 0,
                )
            }
            Expectation::AcceptedValues { values, .. } => {
                let others = count(positions[0])?;
                let list: Vec<String> = values.iter().map(Literal::to_string).collect();
                (
                    format!("{} with other values", rows_text(others, "")),
                    format!("one of {}", list.join(", ")),
                    others == 0,
                )
            }
            Expectation::Range { min, max, .. } => {
                let outside = count(positions[2])?;
                (
                    format!(
                        "{} outside (min {}, max {})",
                        rows_text(outside, ""),
                        shown(&row[positions[0]]),
                        shown(&row[positions[1]])
                    ),
                    bounds(min.as_ref(), max.as_ref()),
                    outside == 0,
                )
            }
            Expectation::RowCount { min, max } => (
                rows_text(rows, ""),
                bounds(min.as_ref(), max.as_ref()),
                min.is_none_or(|min| rows >= min as i64)
                    && max.is_none_or(|max| rows <= max as i64),
            ),
            Expectation::Freshness {
                max_age_seconds, ..
            } => {
                let expected = format!("at most {max_age_seconds} s old");
                match as_i64(&row[positions[0]]) {
                    None => ("no values".to_string(), expected, false),
                    Some(latest) => {
                        let age = now - latest;
                        (
                            format!("latest {}, {age} s old", shown(&row[positions[1]])),
                            expected,
                            age <= *max_age_seconds as i64,
                        )
                    }
                }
            }
            Expectation::Sql { .. } => {
                let failing = count(positions[0])?;
                (
                    format!("{} false or NULL", rows_text(failing, "")),
                    "true for every row".to_string(),
                    failing == 0,
                )
            }
        };
        results.push(CheckResult {
            name: check.name.clone(),
            kind: check.expectation.kind().to_string(),
            observed,
            expected,
            passed,
        });
    }
    Ok(results)
}

/// `1 NULL row`, `3 duplicate rows`, `0 rows`.
fn rows_text(n: i64, what: &str) -> String {
    let noun = if n == 1 { "row" } else { "rows" };
    if what.is_empty() {
        format!("{n} {noun}")
    } else {
        format!("{n} {what} {noun}")
    }
}

fn bounds(min: Option<&impl ToString>, max: Option<&impl ToString>) -> String {
    match (min, max) {
        (Some(min), Some(max)) => format!("between {} and {}", min.to_string(), max.to_string()),
        (Some(min), None) => format!(">= {}", min.to_string()),
        (None, Some(max)) => format!("<= {}", max.to_string()),
        (None, None) => "any".to_string(),
    }
}

/// The report as a table: check, kind, observed, expected, result.
pub fn report_table(report: &CheckReport) -> Result<String, ClientError> {
    let column = |f: fn(&CheckResult) -> String| -> ArrayRef {
        Arc::new(StringArray::from(
            report.checks.iter().map(f).collect::<Vec<String>>(),
        ))
    };
    text_table(
        &["check", "kind", "observed", "expected", "result"],
        vec![
            column(|c| c.name.clone()),
            column(|c| c.kind.clone()),
            column(|c| c.observed.clone()),
            column(|c| c.expected.clone()),
            column(|c| if c.passed { "PASS" } else { "FAIL" }.to_string()),
        ],
    )
}

/// Text columns printed as `tally sql` prints answers.
pub(crate) fn text_table(names: &[&str], columns: Vec<ArrayRef>) -> Result<String, ClientError> {
    let schema = Arc::new(Schema::new(
        names
            .iter()
            .map(|n| Field::new(*n, DataType::Utf8, true))
            .collect::<Vec<_>>(),
    ));
    let batch =
        RecordBatch::try_new(schema, columns).map_err(|e| ClientError::Local(e.to_string()))?;
    arrow::util::pretty::pretty_format_batches(&[batch])
        .map(|t| t.to_string())
        .map_err(|e| ClientError::Local(e.to_string()))
}
