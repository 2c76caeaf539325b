//! `CREATE TABLE` of a Parquet table folder, in Spark's and Hive's words:
//!
//! ```sql
//! CREATE TABLE clicks (ad BIGINT, clicks BIGINT, day DATE) USING parquet PARTITIONED BY (day);
//! CREATE TABLE clicks (ad BIGINT, clicks BIGINT) PARTITIONED BY (day DATE) STORED AS PARQUET;
//! CREATE TABLE daily USING parquet PARTITIONED BY (day) AS SELECT ad, sum(n) AS n, day ...;
//! ```
//!
//! Partition columns go last in the table's columns (as Spark puts them). The statement is
//! read here, the table made by the front end (`table_writes.rs`).

use datafusion::sql::sqlparser::ast::{
    CreateTable, DataType as SqlDataType, FileFormat, HiveDistributionStyle, HiveIOFormat,
    Statement,
};
use datafusion::sql::sqlparser::dialect::SparkSqlDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

use crate::error::CoordinatorError;

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CreateFileTable {
    pub name: String,
    pub if_not_exists: bool,
    /// Every declared column as SQL (`ad BIGINT`), partition columns last; empty for CTAS.
    pub columns: Vec<String>,
    pub partition_by: Vec<String>,
    pub location: Option<String>,
    pub query: Option<String>,
}

/// The `CREATE TABLE` of a Parquet folder in `sql`, if that is what it is (not EXTERNAL, not
/// a bucketed CTAS, which have their own paths).
pub(crate) fn parse_create_table(sql: &str) -> Result<Option<CreateFileTable>, CoordinatorError> {
    let dialect = SparkSqlDialect {};
    // Raw strings: the statement is put back together from the tokens as written.
    let Ok(tokens) = Tokenizer::new(&dialect, sql)
        .with_unescape(false)
        .tokenize()
    else {
        return Ok(None);
    };
    let (tokens, using) = without_using(tokens);
    let text: String = tokens.iter().map(ToString::to_string).collect();
    let Ok(statements) = Parser::parse_sql(&dialect, &text) else {
        return Ok(None);
    };
    let [Statement::CreateTable(create)] = statements.as_slice() else {
        return Ok(None);
    };
    if create.external {
        return Ok(None);
    }
    let name = create.name.to_string().trim_matches('`').to_string();
    let refuse = |why: &str| {
        Err(CoordinatorError::Query(format!(
            "CREATE TABLE {name}: {why}"
        )))
    };
    if create.or_replace || create.temporary {
        return refuse("OR REPLACE and TEMPORARY are not supported: DROP TABLE first");
    }
    let format = using.or_else(|| stored_as(create));
    if let Some(format) = format.filter(|f| !f.eq_ignore_ascii_case("parquet")) {
        return refuse(&format!(
            "tables are made as Parquet (USING parquet), not {format}; register other files \
             with CREATE EXTERNAL TABLE"
        ));
    }
    let mut columns: Vec<String> = create.columns.iter().map(ToString::to_string).collect();
    let mut partition_by = Vec::new();
    if let HiveDistributionStyle::PARTITIONED {
        columns: partitions,
    } = &create.hive_distribution
    {
        for column in partitions {
            let column_name = column.name.value.clone();
            let declared = create
                .columns
                .iter()
                .position(|c| c.name.value == column_name);
            match (declared, &column.data_type) {
                // Spark: `(..., day DATE) PARTITIONED BY (day)`: moved to the end.
                (Some(at), SqlDataType::Unspecified) => {
                    let definition = columns.remove(at);
                    columns.push(definition);
                }
                // Hive: `(...) PARTITIONED BY (day DATE)`.
                (None, SqlDataType::Unspecified) if create.query.is_none() => {
                    return refuse(&format!(
                        "partition column {column_name} needs a type, or a place in the column list"
                    ));
                }
                (None, SqlDataType::Unspecified) => {}
                (None, _) => columns.push(column.to_string()),
                (Some(_), _) => {
                    return refuse(&format!("partition column {column_name} is declared twice"));
                }
            }
            partition_by.push(column_name.to_ascii_lowercase());
        }
    }
    if create.query.is_some() && !create.columns.is_empty() {
        return refuse("give the columns or a query (AS SELECT), not both");
    }
    if create.query.is_none() && columns.is_empty() {
        return refuse("give the columns: CREATE TABLE t (a INT, ...) USING parquet");
    }
    let location = create.location.clone().or_else(|| {
        create
            .hive_formats
            .as_ref()
            .and_then(|f| f.location.clone())
    });
    Ok(Some(CreateFileTable {
        name,
        if_not_exists: create.if_not_exists,
        columns,
        partition_by,
        location,
        query: create.query.as_ref().map(ToString::to_string),
    }))
}

/// `STORED AS PARQUET` and the like.
fn stored_as(create: &CreateTable) -> Option<String> {
    match create.hive_formats.as_ref()?.storage.as_ref()? {
        HiveIOFormat::FileFormat { format } => Some(match format {
            FileFormat::PARQUET => "parquet".to_string(),
            other => other.to_string(),
        }),
        HiveIOFormat::Using { format } => Some(format.value.clone()),
        HiveIOFormat::IOF { .. } => Some("a Hive input format".to_string()),
    }
}

/// The tokens without Spark's `USING format` clause (the parser takes it only as the last
/// clause, Spark anywhere before `AS`), and the format it named.
fn without_using(tokens: Vec<Token>) -> (Vec<Token>, Option<String>) {
    let mut depth = 0usize;
    let mut at = None;
    for (i, token) in tokens.iter().enumerate() {
        match token {
            Token::LParen => depth += 1,
            Token::RParen => depth = depth.saturating_sub(1),
            Token::Word(word) if depth == 0 && word.keyword == Keyword::AS => break,
            Token::Word(word) if depth == 0 && word.keyword == Keyword::USING => {
                at = Some(i);
                break;
            }
            _ => {}
        }
    }
    let Some(at) = at else {
        return (tokens, None);
    };
    let format = tokens[at + 1..]
        .iter()
        .position(|t| !matches!(t, Token::Whitespace(_)))
        .map(|offset| at + 1 + offset);
    match format.map(|i| (i, &tokens[i])) {
        Some((i, Token::Word(word))) => {
            let format = word.value.clone();
            let mut kept = tokens[..at].to_vec();
            kept.extend_from_slice(&tokens[i + 1..]);
            (kept, Some(format))
        }
        _ => (tokens, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(sql: &str) -> CreateFileTable {
        parse_create_table(sql).unwrap().unwrap()
    }

    #[test]
    fn spark_and_hive_forms_give_the_same_table() {
        let spark = parse(
            "CREATE TABLE clicks (day DATE, ad BIGINT, clicks BIGINT) USING parquet \
             PARTITIONED BY (day) LOCATION '/data/clicks'",
        );
        assert_eq!(
            spark.columns,
            vec!["ad BIGINT", "clicks BIGINT", "day DATE"]
        );
        assert_eq!(spark.partition_by, vec!["day"]);
        assert_eq!(spark.location.as_deref(), Some("/data/clicks"));
        let hive = parse(
            "CREATE TABLE clicks (ad BIGINT, clicks BIGINT) PARTITIONED BY (day DATE) \
             STORED AS PARQUET",
        );
        assert_eq!(hive.columns, spark.columns);
        assert_eq!(hive.partition_by, spark.partition_by);
        assert_eq!(hive.location, None);
    }

    #[test]
    fn ctas_keeps_its_query_and_plain_tables_have_no_partitions() {
        let ctas = parse(
            "CREATE TABLE IF NOT EXISTS daily USING parquet PARTITIONED BY (day) AS \
             SELECT a.ad, count(*) AS n, a.day FROM a JOIN b USING (ad) GROUP BY a.ad, a.day",
        );
        assert!(ctas.if_not_exists);
        assert!(ctas.columns.is_empty());
        assert_eq!(ctas.partition_by, vec!["day"]);
        assert!(ctas.query.unwrap().contains("JOIN b USING"));
        let quoted = parse("CREATE TABLE q USING parquet AS SELECT 'it''s' AS a");
        assert_eq!(quoted.query.as_deref(), Some("SELECT 'it''s' AS a"));
        let plain = parse("CREATE TABLE t (a INT)");
        assert!(plain.partition_by.is_empty());
        assert_eq!(
            parse_create_table("CREATE EXTERNAL TABLE t STORED AS PARQUET LOCATION '/x'").unwrap(),
            None
        );
        assert_eq!(parse_create_table("SELECT 1").unwrap(), None);
    }

    #[test]
    fn other_formats_and_untyped_partitions_are_refused() {
        let csv = parse_create_table("CREATE TABLE t (a INT) USING csv")
            .unwrap_err()
            .to_string();
        assert!(csv.contains("Parquet"), "{csv}");
        let untyped =
            parse_create_table("CREATE TABLE t (a INT) PARTITIONED BY (day) STORED AS PARQUET")
                .unwrap_err()
                .to_string();
        assert!(untyped.contains("needs a type"), "{untyped}");
    }
}
