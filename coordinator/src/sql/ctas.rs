//! `CREATE TABLE name WITH (bucket_by = 'k[,k2]', buckets = N [, location = '/dir'])
//! AS SELECT ...`: runs the query as a job whose last stage writes bucket `b` of the result as
//! `bucket-<b>.parquet` (rows hash-partitioned on the bucket columns, the same hash as every
//! exchange), then records the bucketing and registers the table.

use std::path::PathBuf;

use datafusion::sql::sqlparser::ast::{
    CreateTableOptions, Expr as SqlExpr, SqlOption, Statement, Value, ValueWithSpan,
};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;
use tally_common::bucketing::BucketSpec;

use crate::error::CoordinatorError;

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BucketedCtas {
    pub name: String,
    pub query: String,
    pub spec: BucketSpec,
    pub location: Option<PathBuf>,
}

/// The bucketed CTAS in `sql`, if that is what it is.
pub(crate) fn parse_bucketed_ctas(sql: &str) -> Result<Option<BucketedCtas>, CoordinatorError> {
    let Ok(statements) = Parser::parse_sql(&GenericDialect {}, sql) else {
        return Ok(None);
    };
    let [Statement::CreateTable(create)] = statements.as_slice() else {
        return Ok(None);
    };
    let CreateTableOptions::With(options) = &create.table_options else {
        return Ok(None);
    };
    let option = |wanted: &str| with_option(options, wanted);
    let Some(bucket_by) = option("bucket_by") else {
        return Ok(None);
    };
    let Some(query) = &create.query else {
        return Err(CoordinatorError::Query(
            "a bucketed table is created from a query: CREATE TABLE t WITH (bucket_by = 'k', \
             buckets = 8) AS SELECT ..."
                .to_string(),
        ));
    };
    let columns = bucket_columns(&bucket_by)?;
    let buckets = match option("buckets") {
        Some(value) => bucket_count(&value)?,
        None => {
            return Err(CoordinatorError::Query(
                "bucket_by needs buckets = N".to_string(),
            ));
        }
    };
    let location = option("location")
        .map(|value| {
            literal(&value)
                .map(PathBuf::from)
                .ok_or_else(|| CoordinatorError::Query("location takes a string path".to_string()))
        })
        .transpose()?;
    let spec = BucketSpec::new(columns, buckets).map_err(CoordinatorError::from_datafusion)?;
    Ok(Some(BucketedCtas {
        name: create.name.to_string(),
        query: query.to_string(),
        spec,
        location,
    }))
}

/// The value of option `wanted` in `WITH (...)`, by case-insensitive name.
pub(crate) fn with_option(options: &[SqlOption], wanted: &str) -> Option<SqlExpr> {
    options.iter().find_map(|option| match option {
        SqlOption::KeyValue { key, value } if key.value.eq_ignore_ascii_case(wanted) => {
            Some(value.clone())
        }
        _ => None,
    })
}

/// `bucket_by = 'k1,k2'`.
pub(crate) fn bucket_columns(value: &SqlExpr) -> Result<Vec<String>, CoordinatorError> {
    Ok(literal(value)
        .ok_or_else(|| CoordinatorError::Query("bucket_by takes a string: 'k1,k2'".to_string()))?
        .split(',')
        .map(|c| c.trim().to_string())
        .filter(|c| !c.is_empty())
        .collect())
}

/// `buckets = N`.
pub(crate) fn bucket_count(value: &SqlExpr) -> Result<usize, CoordinatorError> {
    literal(value)
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| (1..=4096).contains(n))
        .ok_or_else(|| CoordinatorError::Query("buckets takes a number from 1 to 4096".to_string()))
}

/// The text of a literal or bare word option value.
pub(crate) fn literal(expr: &SqlExpr) -> Option<String> {
    match expr {
        SqlExpr::Value(ValueWithSpan { value, .. }) => match value {
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => Some(s.clone()),
            Value::Number(n, _) => Some(n.to_string()),
            _ => None,
        },
        SqlExpr::Identifier(ident) => Some(ident.value.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucketed_ctas_is_recognized_with_its_options() {
        let ctas = parse_bucketed_ctas(
            "CREATE TABLE o WITH (bucket_by = 'o_orderkey', buckets = 8, location = '/d/o') \
             AS SELECT * FROM orders",
        )
        .unwrap()
        .unwrap();
        assert_eq!(ctas.name, "o");
        assert_eq!(ctas.spec.columns, vec!["o_orderkey"]);
        assert_eq!(ctas.spec.buckets, 8);
        assert_eq!(ctas.location, Some(PathBuf::from("/d/o")));
        assert_eq!(ctas.query, "SELECT * FROM orders");
    }

    #[test]
    fn other_statements_are_not_bucketed_ctas() {
        assert_eq!(parse_bucketed_ctas("SELECT 1").unwrap(), None);
        assert_eq!(
            parse_bucketed_ctas("CREATE TABLE t AS SELECT 1").unwrap(),
            None
        );
    }

    #[test]
    fn bad_options_are_named() {
        let err = parse_bucketed_ctas("CREATE TABLE t WITH (bucket_by = 'k') AS SELECT 1")
            .unwrap_err()
            .to_string();
        assert!(err.contains("buckets"), "{err}");
        let err =
            parse_bucketed_ctas("CREATE TABLE t WITH (bucket_by = 'k', buckets = 0) AS SELECT 1")
                .unwrap_err()
                .to_string();
        assert!(err.contains("buckets"), "{err}");
    }
}
