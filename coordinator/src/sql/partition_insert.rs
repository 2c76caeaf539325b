//! Hive-style writes into a table's partition folder, as Spark and Hive users write them:
//!
//! ```sql
//! INSERT OVERWRITE TABLE clicks PARTITION (day = '2026-11-01') SELECT ad, clicks FROM staged;
//! INSERT INTO TABLE clicks PARTITION (day = '2026-11-02') SELECT ad, clicks FROM staged;
//! ```
//!
//! The query's columns fill the table's other columns by position (cast to their types). A
//! job writes them into a staging folder beside the table; when it has succeeded, the
//! partition is replaced (OVERWRITE: the staging folder takes the partition folder's place)
//! or extended (INTO: its files move in) under the table's exclusive pin (`table_pins.rs`),
//! so a query sees the partition before or after, never a mix. A failed job leaves the table
//! as it was. Not yet: dynamic partitions (`PARTITION (day)` with values from the query) and
//! creating partitioned tables (`CREATE TABLE ... PARTITIONED BY`): a partitioned table is a
//! registered folder of `name=value` folders.

use std::path::{Path, PathBuf};

use datafusion::sql::sqlparser::ast::{
    BinaryOperator, Expr as SqlExpr, Statement, TableObject, Value, ValueWithSpan,
};
use datafusion::sql::sqlparser::dialect::SparkSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

use crate::error::CoordinatorError;

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PartitionInsert {
    pub table: String,
    pub overwrite: bool,
    /// The partition's columns and values, outermost first.
    pub partition: Vec<(String, String)>,
    pub query: String,
}

impl PartitionInsert {
    /// The partition's folder under the table's folder.
    pub(crate) fn folder(&self, table_dir: &Path) -> PathBuf {
        self.partition
            .iter()
            .fold(table_dir.to_path_buf(), |dir, (column, value)| {
                dir.join(format!("{column}={value}"))
            })
    }

    /// Checks the statement names exactly the table's partition columns, in order.
    pub(crate) fn check_columns(&self, columns: &[String]) -> Result<(), CoordinatorError> {
        let named: Vec<&str> = self.partition.iter().map(|(c, _)| c.as_str()).collect();
        if named != columns.iter().map(String::as_str).collect::<Vec<_>>() {
            return Err(CoordinatorError::Query(format!(
                "INSERT into {}: PARTITION names ({}), the table is partitioned by ({})",
                self.table,
                named.join(", "),
                columns.join(", ")
            )));
        }
        Ok(())
    }
}

/// The partition insert in `sql`, if that is what it is (an INSERT with a PARTITION clause).
pub(crate) fn parse_partition_insert(
    sql: &str,
) -> Result<Option<PartitionInsert>, CoordinatorError> {
    let Ok(statements) = Parser::parse_sql(&SparkSqlDialect {}, sql) else {
        return Ok(None);
    };
    let [Statement::Insert(insert)] = statements.as_slice() else {
        return Ok(None);
    };
    let Some(spec) = &insert.partitioned else {
        return Ok(None);
    };
    let TableObject::TableName(name) = &insert.table else {
        return Ok(None);
    };
    let table = name.to_string().trim_matches('`').to_string();
    let Some(query) = &insert.source else {
        return Err(CoordinatorError::Query(format!(
            "INSERT into {table}: write the rows as a query (INSERT ... PARTITION (...) SELECT ...)"
        )));
    };
    let partition = spec
        .iter()
        .map(|expr| partition_value(&table, expr))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(PartitionInsert {
        table,
        overwrite: insert.overwrite,
        partition,
        query: query.to_string(),
    }))
}

fn partition_value(table: &str, expr: &SqlExpr) -> Result<(String, String), CoordinatorError> {
    let SqlExpr::BinaryOp {
        left,
        op: BinaryOperator::Eq,
        right,
    } = expr
    else {
        return Err(CoordinatorError::Query(format!(
            "INSERT into {table}: PARTITION ({expr}) takes a value (column = 'value'); dynamic \
             partitions are not supported yet"
        )));
    };
    let SqlExpr::Identifier(column) = left.as_ref() else {
        return Err(CoordinatorError::Query(format!(
            "INSERT into {table}: {left} is not a partition column name"
        )));
    };
    let value = match right.as_ref() {
        SqlExpr::Value(ValueWithSpan {
            value: Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) | Value::Number(s, _),
            ..
        }) => s.clone(),
        other => {
            return Err(CoordinatorError::Query(format!(
                "INSERT into {table}: partition value {other} must be a literal"
            )));
        }
    };
    if value.is_empty() || value.contains('/') || value.starts_with('.') {
        return Err(CoordinatorError::Query(format!(
            "INSERT into {table}: partition value '{value}' cannot name a folder"
        )));
    }
    Ok((column.value.to_ascii_lowercase(), value))
}

/// Puts the staged files in place: the partition folder replaced by `staging` (overwrite) or
/// `staging`'s files moved into it, named after the job (append). The caller holds the
/// table's exclusive pin, so no query lists or reads the folder meanwhile.
pub(crate) fn commit(
    staging: &Path,
    partition: &Path,
    overwrite: bool,
    job: &str,
) -> std::io::Result<()> {
    if let Some(parent) = partition.parent() {
        std::fs::create_dir_all(parent)?;
    }
    if overwrite || !partition.exists() {
        let retired = staging.with_extension("replaced");
        if partition.exists() {
            std::fs::rename(partition, &retired)?;
        }
        std::fs::rename(staging, partition)?;
        if retired.exists() {
            std::fs::remove_dir_all(&retired)?;
        }
        return Ok(());
    }
    for entry in std::fs::read_dir(staging)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().to_string();
        std::fs::rename(entry.path(), partition.join(format!("part-{job}-{name}")))?;
    }
    std::fs::remove_dir(staging)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_inserts_are_read_from_spark_sql() {
        let insert = parse_partition_insert(
            "INSERT OVERWRITE TABLE clicks PARTITION (day = '2026-11-01') SELECT ad, n FROM s",
        )
        .unwrap()
        .unwrap();
        assert!(insert.overwrite);
        assert_eq!(insert.table, "clicks");
        assert_eq!(
            insert.partition,
            vec![("day".to_string(), "2026-11-01".to_string())]
        );
        assert_eq!(insert.query, "SELECT ad, n FROM s");
        assert_eq!(
            insert.folder(Path::new("/t")),
            PathBuf::from("/t/day=2026-11-01")
        );
        let into = parse_partition_insert("INSERT INTO clicks PARTITION (day='x') SELECT 1")
            .unwrap()
            .unwrap();
        assert!(!into.overwrite);
        assert!(
            parse_partition_insert("INSERT INTO clicks SELECT 1")
                .unwrap()
                .is_none()
        );
        let dynamic = parse_partition_insert("INSERT OVERWRITE TABLE c PARTITION (day) SELECT 1")
            .unwrap_err()
            .to_string();
        assert!(
            dynamic.contains("dynamic partitions are not supported yet"),
            "{dynamic}"
        );
    }

    #[test]
    fn overwrite_replaces_the_folder_and_append_adds_files() {
        let dir = tempfile::tempdir().unwrap();
        let partition = dir.path().join("t").join("day=1");
        std::fs::create_dir_all(&partition).unwrap();
        std::fs::write(partition.join("old.parquet"), b"old").unwrap();
        let staging = dir.path().join(".staging-a");
        std::fs::create_dir_all(&staging).unwrap();
        std::fs::write(staging.join("bucket-00000.parquet"), b"new").unwrap();
        commit(&staging, &partition, true, "a").unwrap();
        let names = |dir: &Path| {
            let mut names: Vec<String> = std::fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
                .collect();
            names.sort();
            names
        };
        assert_eq!(names(&partition), vec!["bucket-00000.parquet"]);
        assert!(!staging.exists());

        std::fs::create_dir_all(&staging).unwrap();
        std::fs::write(staging.join("bucket-00000.parquet"), b"more").unwrap();
        commit(&staging, &partition, false, "b").unwrap();
        assert_eq!(
            names(&partition),
            vec!["bucket-00000.parquet", "part-b-bucket-00000.parquet"]
        );
        assert_eq!(names(dir.path()), vec!["t"]);
    }
}
