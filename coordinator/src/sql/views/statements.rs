//! The statements of materialized views, recognized before DataFusion sees the SQL (it plans
//! none of them): `CREATE MATERIALIZED VIEW`, `REFRESH MATERIALIZED VIEW` and
//! `DROP MATERIALIZED VIEW`.

use datafusion::sql::sqlparser::ast::{CreateTableOptions, ObjectType, Statement};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;

use crate::error::CoordinatorError;
use crate::sql::ctas::{bucket_columns, bucket_count, literal, with_option};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ViewStatement {
    Create {
        name: String,
        query: String,
        bucket_by: Option<Vec<String>>,
        buckets: Option<usize>,
        /// Where the states live: a folder, or `s3://bucket/prefix`; the table folder's
        /// `<name>/` when not given.
        location: Option<String>,
    },
    Refresh {
        name: String,
        mode: RefreshMode,
    },
    Drop {
        name: String,
        if_exists: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RefreshMode {
    /// Only the source inputs the view does not cover yet.
    Incremental,
    /// Everything again from the source.
    Full,
    /// The groups matching this predicate over the view's dimensions, from the source again.
    Range(String),
}

impl RefreshMode {
    pub(crate) fn as_str(&self) -> &'static str {
        match self {
            Self::Incremental => "incremental",
            Self::Full => "full",
            Self::Range(_) => "range",
        }
    }
}

/// The view statement `sql` is, if it is one.
pub(crate) fn parse_view_statement(sql: &str) -> Result<Option<ViewStatement>, CoordinatorError> {
    if let Some(refresh) = parse_refresh(sql)? {
        return Ok(Some(refresh));
    }
    let Ok(statements) = Parser::parse_sql(&GenericDialect {}, sql) else {
        return Ok(None);
    };
    match statements.as_slice() {
        [Statement::CreateView(create)] if create.materialized => {
            let options = match &create.options {
                CreateTableOptions::With(options) => options.as_slice(),
                CreateTableOptions::None => &[],
                _ => {
                    return Err(CoordinatorError::Query(
                        "a materialized view takes WITH (bucket_by = 'k', buckets = N, location = \
                         's3://bucket/prefix')"
                            .to_string(),
                    ));
                }
            };
            let bucket_by = with_option(options, "bucket_by")
                .map(|v| bucket_columns(&v))
                .transpose()?;
            let buckets = with_option(options, "buckets")
                .map(|v| bucket_count(&v))
                .transpose()?;
            let location = with_option(options, "location")
                .map(|v| {
                    literal(&v).ok_or_else(|| {
                        CoordinatorError::Query(
                            "location takes a string: a folder or 's3://bucket/prefix'".to_string(),
                        )
                    })
                })
                .transpose()?;
            Ok(Some(ViewStatement::Create {
                name: create.name.to_string(),
                query: create.query.to_string(),
                bucket_by,
                buckets,
                location,
            }))
        }
        [
            Statement::Drop {
                object_type: ObjectType::MaterializedView,
                if_exists,
                names,
                ..
            },
        ] => match names.as_slice() {
            [name] => Ok(Some(ViewStatement::Drop {
                name: name.to_string(),
                if_exists: *if_exists,
            })),
            _ => Err(CoordinatorError::Query(
                "DROP MATERIALIZED VIEW takes one view".to_string(),
            )),
        },
        _ => Ok(None),
    }
}

/// `REFRESH MATERIALIZED VIEW name [FULL | WHERE <predicate>]`.
fn parse_refresh(sql: &str) -> Result<Option<ViewStatement>, CoordinatorError> {
    let mut rest = sql.trim().trim_end_matches(';').trim_end();
    for keyword in ["REFRESH", "MATERIALIZED", "VIEW"] {
        match next_word(rest) {
            Some((word, after)) if word.eq_ignore_ascii_case(keyword) => rest = after,
            _ if keyword == "REFRESH" => return Ok(None),
            _ => return Err(refresh_usage()),
        }
    }
    let (name, rest) = next_word(rest).ok_or_else(refresh_usage)?;
    let mode = match next_word(rest) {
        None => RefreshMode::Incremental,
        Some((word, "")) if word.eq_ignore_ascii_case("FULL") => RefreshMode::Full,
        Some((word, predicate)) if word.eq_ignore_ascii_case("WHERE") && !predicate.is_empty() => {
            Parser::new(&GenericDialect {})
                .try_with_sql(predicate)
                .and_then(|mut parser| parser.parse_expr())
                .map_err(|e| {
                    CoordinatorError::Query(format!("REFRESH ... WHERE {predicate}: {e}"))
                })?;
            RefreshMode::Range(predicate.to_string())
        }
        _ => return Err(refresh_usage()),
    };
    Ok(Some(ViewStatement::Refresh {
        name: name.to_string(),
        mode,
    }))
}

fn refresh_usage() -> CoordinatorError {
    CoordinatorError::Query(
        "use REFRESH MATERIALIZED VIEW name [FULL | WHERE <predicate on its dimensions>]"
            .to_string(),
    )
}

/// The first whitespace-separated word of `text` and what follows it, trimmed.
fn next_word(text: &str) -> Option<(&str, &str)> {
    let text = text.trim_start();
    if text.is_empty() {
        return None;
    }
    let end = text.find(char::is_whitespace).unwrap_or(text.len());
    Some((&text[..end], text[end..].trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refresh(name: &str, mode: RefreshMode) -> Option<ViewStatement> {
        Some(ViewStatement::Refresh {
            name: name.to_string(),
            mode,
        })
    }

    #[test]
    fn refresh_statements_in_each_mode() {
        assert_eq!(
            parse_view_statement("refresh materialized view v;").unwrap(),
            refresh("v", RefreshMode::Incremental)
        );
        assert_eq!(
            parse_view_statement("REFRESH MATERIALIZED VIEW v FULL").unwrap(),
            refresh("v", RefreshMode::Full)
        );
        assert_eq!(
            parse_view_statement("REFRESH MATERIALIZED VIEW v WHERE day = '2026-11-01'").unwrap(),
            refresh("v", RefreshMode::Range("day = '2026-11-01'".to_string()))
        );
    }

    #[test]
    fn malformed_refreshes_say_how_to_write_them() {
        for sql in [
            "REFRESH VIEW v",
            "REFRESH MATERIALIZED VIEW",
            "REFRESH MATERIALIZED VIEW v PARTIAL",
            "REFRESH MATERIALIZED VIEW v WHERE",
        ] {
            let err = parse_view_statement(sql).unwrap_err().to_string();
            assert!(
                err.contains("REFRESH MATERIALIZED VIEW name"),
                "{sql}: {err}"
            );
        }
        let err = parse_view_statement("REFRESH MATERIALIZED VIEW v WHERE day = ")
            .unwrap_err()
            .to_string();
        assert!(err.contains("WHERE day ="), "{err}");
    }

    #[test]
    fn create_and_drop() {
        assert_eq!(
            parse_view_statement(
                "CREATE MATERIALIZED VIEW v WITH (bucket_by = 'day', buckets = 4, \
                 location = 's3://b/views/v') AS SELECT day, sum(x) AS s FROM t GROUP BY day"
            )
            .unwrap(),
            Some(ViewStatement::Create {
                name: "v".to_string(),
                query: "SELECT day, sum(x) AS s FROM t GROUP BY day".to_string(),
                bucket_by: Some(vec!["day".to_string()]),
                buckets: Some(4),
                location: Some("s3://b/views/v".to_string()),
            })
        );
        assert_eq!(
            parse_view_statement("DROP MATERIALIZED VIEW IF EXISTS v").unwrap(),
            Some(ViewStatement::Drop {
                name: "v".to_string(),
                if_exists: true
            })
        );
        assert_eq!(
            parse_view_statement("CREATE VIEW v AS SELECT 1").unwrap(),
            None
        );
        assert_eq!(parse_view_statement("SELECT 1").unwrap(), None);
    }
}
