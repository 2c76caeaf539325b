//! Binding a prepared statement's parameters: each placeholder (`$1`, `$2`, ... or `?` in
//! order) becomes the SQL literal of its bound value, found by the SQL tokenizer so that a
//! `$1` inside a string or a comment stays as it is. Tally plans SQL text (views, bucketed
//! CTAS and queries alike), so binding produces text.

use arrow::array::{Array, RecordBatch};
use arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

use crate::error::CoordinatorError;

/// How many parameters `sql` takes: the highest `$n`, or the number of `?`.
pub(super) fn parameter_count(sql: &str) -> Result<usize, CoordinatorError> {
    let mut numbered = 0;
    let mut positional = 0;
    for token in tokens(sql)? {
        if let Token::Placeholder(name) = token {
            match placeholder_index(&name, positional)? {
                Placeholder::Numbered(n) => numbered = numbered.max(n),
                Placeholder::Positional(_) => positional += 1,
            }
        }
    }
    Ok(numbered.max(positional))
}

/// The bound values of the first row of `parameters`, as SQL literals, in column order.
pub(super) fn literals(parameters: &RecordBatch) -> Result<Vec<String>, CoordinatorError> {
    match parameters.num_rows() {
        0 => return Ok(Vec::new()),
        1 => {}
        rows => {
            return Err(CoordinatorError::Query(format!(
                "{rows} rows of parameters were bound: a Tally query takes one row"
            )));
        }
    }
    parameters
        .columns()
        .iter()
        .enumerate()
        .map(|(i, column)| literal(i + 1, column.as_ref()))
        .collect()
}

/// `sql` with each placeholder replaced by its literal.
pub(super) fn bind(sql: &str, literals: &[String]) -> Result<String, CoordinatorError> {
    let mut bound = String::with_capacity(sql.len());
    let mut positional = 0;
    for token in tokens(sql)? {
        let Token::Placeholder(name) = &token else {
            bound.push_str(&token.to_string());
            continue;
        };
        let index = match placeholder_index(name, positional)? {
            Placeholder::Numbered(n) => n,
            Placeholder::Positional(n) => {
                positional += 1;
                n
            }
        };
        let value = literals.get(index - 1).ok_or_else(|| {
            CoordinatorError::Query(format!(
                "no value bound for parameter {name} (parameter {index}; {} bound)",
                literals.len()
            ))
        })?;
        bound.push_str(value);
    }
    Ok(bound)
}

enum Placeholder {
    Numbered(usize),
    Positional(usize),
}

fn placeholder_index(name: &str, positional: usize) -> Result<Placeholder, CoordinatorError> {
    if name == "?" {
        return Ok(Placeholder::Positional(positional + 1));
    }
    name.strip_prefix('$')
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|n| *n >= 1)
        .map(Placeholder::Numbered)
        .ok_or_else(|| {
            CoordinatorError::Query(format!(
                "placeholder {name}: use $1, $2, ... or ? for parameters"
            ))
        })
}

/// The statement's tokens as written: strings keep their escapes, so the text re-assembles.
fn tokens(sql: &str) -> Result<Vec<Token>, CoordinatorError> {
    Tokenizer::new(&GenericDialect {}, sql)
        .with_unescape(false)
        .tokenize()
        .map_err(|e| CoordinatorError::Query(e.to_string()))
}

fn literal(position: usize, column: &dyn Array) -> Result<String, CoordinatorError> {
    let value = ScalarValue::try_from_array(column, 0)
        .map_err(|e| CoordinatorError::Query(format!("parameter ${position}: {e}")))?;
    if value.is_null() {
        return Ok("NULL".to_string());
    }
    let text = value.to_string();
    let quoted = || format!("'{}'", text.replace('\'', "''"));
    Ok(match value.data_type() {
        DataType::Boolean => text.to_uppercase(),
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64
        | DataType::Decimal128(..)
        | DataType::Decimal256(..) => text,
        DataType::Float32 | DataType::Float64 => {
            let finite = match &value {
                ScalarValue::Float32(Some(v)) => v.is_finite(),
                ScalarValue::Float64(Some(v)) => v.is_finite(),
                _ => false,
            };
            if !finite {
                return Err(CoordinatorError::Query(format!(
                    "parameter ${position} is {text}: only finite numbers can be bound"
                )));
            }
            format!("CAST({text} AS DOUBLE)")
        }
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => quoted(),
        DataType::Date32 | DataType::Date64 => format!("DATE {}", quoted()),
        DataType::Timestamp(_, None) => format!("TIMESTAMP {}", quoted()),
        other => {
            return Err(CoordinatorError::Query(format!(
                "parameter ${position} has type {other}, which Tally cannot bind yet: bind \
                 numbers, booleans, strings, dates or timestamps without a time zone"
            )));
        }
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, Date32Array, Float64Array, Int64Array, StringArray};

    use super::*;

    fn batch(columns: Vec<ArrayRef>) -> RecordBatch {
        RecordBatch::try_from_iter(
            columns
                .into_iter()
                .enumerate()
                .map(|(i, c)| (format!("p{i}"), c)),
        )
        .unwrap()
    }

    #[test]
    fn numbered_and_positional_placeholders_take_their_values_but_not_inside_strings() {
        let values = literals(&batch(vec![
            Arc::new(Int64Array::from(vec![7])),
            Arc::new(StringArray::from(vec!["O'Neil"])),
        ]))
        .unwrap();
        assert_eq!(
            bind(
                "SELECT '$1', a FROM t WHERE a = $1 AND b = $2 -- $2",
                &values
            )
            .unwrap(),
            "SELECT '$1', a FROM t WHERE a = 7 AND b = 'O''Neil' -- $2"
        );
        assert_eq!(
            bind("SELECT * FROM t WHERE a = ? AND b = ?", &values).unwrap(),
            "SELECT * FROM t WHERE a = 7 AND b = 'O''Neil'"
        );
        assert_eq!(parameter_count("SELECT $2, $1, '$9'").unwrap(), 2);
        assert_eq!(parameter_count("SELECT ?, ?, ?").unwrap(), 3);
    }

    #[test]
    fn dates_floats_and_nulls_become_typed_literals() {
        let values = literals(&batch(vec![
            Arc::new(Date32Array::from(vec![Some(9131)])),
            Arc::new(Float64Array::from(vec![Some(0.05)])),
            Arc::new(Int64Array::from(vec![None])),
        ]))
        .unwrap();
        assert_eq!(
            values,
            vec!["DATE '1995-01-01'", "CAST(0.05 AS DOUBLE)", "NULL"]
        );
    }

    #[test]
    fn missing_values_and_several_rows_are_the_callers_error() {
        let err = bind("SELECT $2", &["1".to_string()]).unwrap_err();
        assert!(
            err.to_string().contains("no value bound for parameter $2"),
            "{err}"
        );
        let two_rows = batch(vec![Arc::new(Int64Array::from(vec![1, 2]))]);
        let err = literals(&two_rows).unwrap_err();
        assert!(err.to_string().contains("2 rows of parameters"), "{err}");
    }
}
