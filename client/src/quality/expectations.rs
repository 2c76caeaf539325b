//! The expectations file: a JSON list of small objects, each naming one kind of check
//! (Great Expectations' most used ones, in a smaller form):
//!
//! ```json
//! [
//!   {"not_null": ["id", "region"]},
//!   {"unique": ["id", "day"], "name": "one_row_per_id_and_day"},
//!   {"accepted_values": {"column": "region", "values": ["eu", "us"]}},
//!   {"range": {"column": "revenue", "min": 0, "max": 100000}},
//!   {"row_count": {"min": 1, "max": 1000000}},
//!   {"freshness": {"column": "ts", "max_age_seconds": 86400}},
//!   {"sql": {"name": "positive_revenue", "predicate": "revenue >= 0"}}
//! ]
//! ```
//!
//! Parsing is strict: an unknown kind or field, a missing bound or a predicate that is not one
//! SQL expression is an error that names the entry, so a typo never becomes a check that
//! silently passes. Columns are checked against the table's schema in `bind`.

use std::fmt;

use arrow::datatypes::{DataType, Schema};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::Token;
use serde::Deserialize;
use serde_json::Value;

use crate::error::ClientError;

/// The file name of the expectations attached to a folder table (hidden from the table's
/// data files, as `_tally_table.json` is).
pub const ATTACHED_FILE: &str = "_tally_expectations.json";

/// One check, named.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub name: String,
    pub expectation: Expectation,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expectation {
    /// No NULL in `column`.
    NotNull { column: String },
    /// No two rows with the same values of `columns`; NULLs count as equal values (as
    /// GROUP BY groups them), so two rows with the same NULL key are duplicates.
    Unique { columns: Vec<String> },
    /// Every non-NULL value of `column` is one of `values`.
    AcceptedValues {
        column: String,
        values: Vec<Literal>,
    },
    /// Every non-NULL value of `column` lies within the bounds (inclusive); at least one.
    Range {
        column: String,
        min: Option<Literal>,
        max: Option<Literal>,
    },
    /// The table's row count lies within the bounds (inclusive); at least one.
    RowCount { min: Option<u64>, max: Option<u64> },
    /// The latest value of the timestamp or date `column` is at most this old.
    Freshness {
        column: String,
        max_age_seconds: u64,
    },
    /// `predicate` is TRUE for every row (a row where it is FALSE or NULL fails).
    Sql { predicate: String },
}

impl Expectation {
    pub fn kind(&self) -> &'static str {
        match self {
            Expectation::NotNull { .. } => "not_null",
            Expectation::Unique { .. } => "unique",
            Expectation::AcceptedValues { .. } => "accepted_values",
            Expectation::Range { .. } => "range",
            Expectation::RowCount { .. } => "row_count",
            Expectation::Freshness { .. } => "freshness",
            Expectation::Sql { .. } => "sql",
        }
    }

    fn columns(&self) -> Vec<&str> {
        match self {
            Expectation::NotNull { column }
            | Expectation::AcceptedValues { column, .. }
            | Expectation::Range { column, .. }
            | Expectation::Freshness { column, .. } => vec![column.as_str()],
            Expectation::Unique { columns } => columns.iter().map(String::as_str).collect(),
            Expectation::RowCount { .. } | Expectation::Sql { .. } => Vec::new(),
        }
    }
}

/// A value in the file: a JSON number, string or boolean, written into SQL as a literal.
#[derive(Debug, Clone, PartialEq)]
pub struct Literal(Value);

impl Literal {
    fn new(value: Value, what: &str) -> Result<Self, String> {
        match value {
            Value::Number(_) | Value::String(_) | Value::Bool(_) => Ok(Literal(value)),
            other => Err(format!(
                "{what}: expected a number, a string or a boolean, got {other}"
            )),
        }
    }

    /// The value as a SQL literal: strings quoted with `'` doubled.
    pub fn to_sql(&self) -> String {
        match &self.0 {
            Value::String(s) => format!("'{}'", s.replace('\'', "''")),
            Value::Bool(true) => "TRUE".to_string(),
            Value::Bool(false) => "FALSE".to_string(),
            other => other.to_string(),
        }
    }
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Value::String(s) => write!(f, "{s}"),
            other => write!(f, "{other}"),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AcceptedValuesSpec {
    column: String,
    values: Vec<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RangeSpec {
    column: String,
    min: Option<Value>,
    max: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RowCountSpec {
    min: Option<u64>,
    max: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FreshnessSpec {
    column: String,
    max_age_seconds: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SqlSpec {
    name: Option<String>,
    predicate: String,
}

const KINDS: &str = "not_null, unique, accepted_values, range, row_count, freshness, sql";

/// Parses an expectations file's text; `source` names it in errors.
pub fn parse_expectations(text: &str, source: &str) -> Result<Vec<Check>, ClientError> {
    let fail = |message: String| ClientError::Query(format!("expectations {source}: {message}"));
    let value: Value =
        serde_json::from_str(text).map_err(|e| fail(format!("not valid JSON: {e}")))?;
    let Value::Array(entries) = value else {
        return Err(fail("expected a JSON list of expectations".to_string()));
    };
    if entries.is_empty() {
        return Err(fail("the list of expectations is empty".to_string()));
    }
    let mut checks = Vec::new();
    for (index, entry) in entries.into_iter().enumerate() {
        let number = index + 1;
        let parsed = parse_entry(entry).map_err(|e| fail(format!("entry {number}: {e}")))?;
        checks.extend(parsed);
    }
    let mut names: Vec<&str> = checks.iter().map(|c| c.name.as_str()).collect();
    names.sort_unstable();
    if let Some(pair) = names.windows(2).find(|pair| pair[0] == pair[1]) {
        return Err(fail(format!(
            "two checks are named {}: give one a \"name\"",
            pair[0]
        )));
    }
    Ok(checks)
}

fn parse_entry(entry: Value) -> Result<Vec<Check>, String> {
    let Value::Object(mut object) = entry else {
        return Err(format!(
            "expected an object such as {{\"not_null\": [\"id\"]}}, got {entry}"
        ));
    };
    let name = match object.remove("name") {
        None => None,
        Some(Value::String(name)) if !name.trim().is_empty() => Some(name),
        Some(other) => return Err(format!("\"name\" must be a non-empty string, got {other}")),
    };
    if object.len() != 1 {
        let keys: Vec<&String> = object.keys().collect();
        return Err(format!(
            "expected exactly one kind of check ({KINDS}), got {keys:?}"
        ));
    }
    let (kind, body) = object.into_iter().next().expect("one entry");
    let spec = |e: serde_json::Error| format!("{kind}: {e}");
    let one = |default: String, expectation: Expectation| {
        vec![Check {
            name: name.clone().unwrap_or(default),
            expectation,
        }]
    };
    Ok(match kind.as_str() {
        "not_null" => {
            let columns = column_list(body, "not_null")?;
            let several = columns.len() > 1;
            columns
                .into_iter()
                .map(|column| Check {
                    name: match &name {
                        Some(name) if several => format!("{name}({column})"),
                        Some(name) => name.clone(),
                        None => format!("not_null({column})"),
                    },
                    expectation: Expectation::NotNull { column },
                })
                .collect()
        }
        "unique" => {
            let columns = column_list(body, "unique")?;
            one(
                format!("unique({})", columns.join(", ")),
                Expectation::Unique { columns },
            )
        }
        "accepted_values" => {
            let spec: AcceptedValuesSpec = serde_json::from_value(body).map_err(spec)?;
            if spec.values.is_empty() {
                return Err("accepted_values: \"values\" is empty".to_string());
            }
            let values = spec
                .values
                .into_iter()
                .map(|v| Literal::new(v, "accepted_values"))
                .collect::<Result<_, _>>()?;
            one(
                format!("accepted_values({})", spec.column),
                Expectation::AcceptedValues {
                    column: spec.column,
                    values,
                },
            )
        }
        "range" => {
            let spec: RangeSpec = serde_json::from_value(body).map_err(spec)?;
            let bound = |v: Option<Value>, which: &str| {
                v.map(|v| Literal::new(v, &format!("range {which}")))
                    .transpose()
            };
            let (min, max) = (bound(spec.min, "min")?, bound(spec.max, "max")?);
            if min.is_none() && max.is_none() {
                return Err("range: give \"min\", \"max\" or both".to_string());
            }
            one(
                format!("range({})", spec.column),
                Expectation::Range {
                    column: spec.column,
                    min,
                    max,
                },
            )
        }
        "row_count" => {
            let spec: RowCountSpec = serde_json::from_value(body).map_err(spec)?;
            if spec.min.is_none() && spec.max.is_none() {
                return Err("row_count: give \"min\", \"max\" or both".to_string());
            }
            one(
                "row_count".to_string(),
                Expectation::RowCount {
                    min: spec.min,
                    max: spec.max,
                },
            )
        }
        "freshness" => {
            let spec: FreshnessSpec = serde_json::from_value(body).map_err(spec)?;
            one(
                format!("freshness({})", spec.column),
                Expectation::Freshness {
                    column: spec.column,
                    max_age_seconds: spec.max_age_seconds,
                },
            )
        }
        "sql" => {
            let spec: SqlSpec = serde_json::from_value(body).map_err(spec)?;
            check_predicate(&spec.predicate)?;
            let name = name
                .clone()
                .or(spec.name)
                .ok_or_else(|| "sql: give the check a \"name\"".to_string())?;
            vec![Check {
                name,
                expectation: Expectation::Sql {
                    predicate: spec.predicate,
                },
            }]
        }
        other => {
            return Err(format!(
                "unknown kind of check \"{other}\" (known: {KINDS})"
            ));
        }
    })
}

fn column_list(body: Value, kind: &str) -> Result<Vec<String>, String> {
    let columns: Vec<String> = serde_json::from_value(body)
        .map_err(|_| format!("{kind}: expected a list of column names"))?;
    if columns.is_empty() {
        return Err(format!("{kind}: the list of columns is empty"));
    }
    Ok(columns)
}

/// A predicate must be exactly one SQL expression: it is put inside the check's query, so
/// anything after the expression (a `)`, a `;`, a second clause) is refused here.
fn check_predicate(predicate: &str) -> Result<(), String> {
    let bad = |e: String| format!("sql: predicate {predicate:?} is not one SQL expression: {e}");
    let mut parser = Parser::new(&GenericDialect {})
        .try_with_sql(predicate)
        .map_err(|e| bad(e.to_string()))?;
    parser.parse_expr().map_err(|e| bad(e.to_string()))?;
    match parser.peek_token().token {
        Token::EOF => Ok(()),
        other => Err(bad(format!("unexpected {other} after the expression"))),
    }
}

/// Checks that every column the checks name is in `schema`, and that freshness columns
/// hold timestamps or dates.
pub fn bind(checks: &[Check], table: &str, schema: &Schema) -> Result<(), ClientError> {
    for check in checks {
        for column in check.expectation.columns() {
            let Ok(field) = schema.field_with_name(column) else {
                let known: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
                return Err(ClientError::Query(format!(
                    "check {}: table {table} has no column \"{column}\" (its columns: {})",
                    check.name,
                    known.join(", ")
                )));
            };
            if let Expectation::Freshness { .. } = check.expectation
                && !matches!(
                    field.data_type(),
                    DataType::Timestamp(..) | DataType::Date32 | DataType::Date64
                )
            {
                return Err(ClientError::Query(format!(
                    "check {}: column \"{column}\" is {}, freshness needs a timestamp or a date",
                    check.name,
                    field.data_type()
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(text: &str) -> String {
        parse_expectations(text, "e.json").unwrap_err().to_string()
    }

    #[test]
    fn every_kind_parses_with_its_default_name() {
        let checks = parse_expectations(
            r#"[{"not_null": ["a", "b"]}, {"unique": ["a", "b"]},
                {"accepted_values": {"column": "c", "values": ["x", 1]}},
                {"range": {"column": "n", "min": 0}}, {"row_count": {"max": 5}},
                {"freshness": {"column": "ts", "max_age_seconds": 60}},
                {"sql": {"name": "pos", "predicate": "n >= 0"}}]"#,
            "e.json",
        )
        .unwrap();
        let names: Vec<&str> = checks.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "not_null(a)",
                "not_null(b)",
                "unique(a, b)",
                "accepted_values(c)",
                "range(n)",
                "row_count",
                "freshness(ts)",
                "pos"
            ]
        );
    }

    #[test]
    fn mistakes_are_errors_that_name_the_entry() {
        assert_eq!(
            error(r#"[{"not_nul": ["a"]}]"#),
            "expectations e.json: entry 1: unknown kind of check \"not_nul\" (known: not_null, \
             unique, accepted_values, range, row_count, freshness, sql)"
        );
        assert!(error(r#"[{"range": {"column": "a"}}]"#).contains("give \"min\", \"max\" or both"));
        assert!(error(r#"[{"range": {"column": "a", "mn": 1}}]"#).contains("unknown field `mn`"));
        assert!(error("[{").contains("not valid JSON"));
        assert!(error(r#"{"not_null": ["a"]}"#).contains("expected a JSON list"));
        assert!(
            error(r#"[{"sql": {"predicate": "a > 0"}}]"#).contains("give the check a \"name\"")
        );
        assert!(
            error(r#"[{"sql": {"name": "x", "predicate": "a > 0) FROM t; DROP TABLE t; --"}}]"#)
                .contains("is not one SQL expression")
        );
        assert!(
            error(r#"[{"not_null": ["a"]}, {"not_null": ["a"]}]"#)
                .contains("two checks are named not_null(a)")
        );
    }

    #[test]
    fn literals_are_quoted_for_sql() {
        let l = Literal::new(Value::String("it's".into()), "x").unwrap();
        assert_eq!(l.to_sql(), "'it''s'");
        assert_eq!(
            Literal::new(serde_json::json!(2.5), "x").unwrap().to_sql(),
            "2.5"
        );
        assert!(Literal::new(Value::Null, "x").is_err());
    }
}
