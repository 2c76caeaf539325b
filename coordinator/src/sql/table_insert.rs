//! Writes into a Parquet table folder, as Spark and Hive users write them:
//!
//! ```sql
//! INSERT OVERWRITE TABLE clicks PARTITION (day = '2026-11-01') SELECT ad, clicks FROM s;
//! INSERT OVERWRITE TABLE clicks PARTITION (day) SELECT ad, clicks, day FROM s;  -- dynamic
//! INSERT INTO clicks SELECT ad, clicks, day FROM s;       -- every partition column dynamic
//! INSERT INTO totals SELECT ...;                           -- a table without partitions
//! ```
//!
//! The query's columns fill the table's file columns by position, then its dynamic
//! partition columns (cast to their types). A job writes them into a staging folder beside
//! the table, one `col=value` folder per dynamic partition; when it has succeeded, the
//! partitions it wrote replace (OVERWRITE) or gain (INTO) files under the table's exclusive
//! pin (`table_pins.rs`), so a query sees the table before or after, never a mix. A failed
//! job leaves the table as it was.

use std::path::{Path, PathBuf};

use datafusion::sql::sqlparser::ast::{
    BinaryOperator, Expr as SqlExpr, Statement, TableObject, Value, ValueWithSpan,
};
use datafusion::sql::sqlparser::dialect::SparkSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use tally_common::hive_sink::check_partition_value;

use crate::error::CoordinatorError;

/// Which partitions an INSERT OVERWRITE with dynamic partition columns replaces
/// (`tally.partition_overwrite_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OverwriteMode {
    /// Only the partitions the query wrote rows into (Hive's, and Spark's `dynamic` mode).
    Dynamic,
    /// Every partition under the statement's static values (Spark's default for its own
    /// tables): partitions the query wrote nothing into are emptied too.
    Static,
}

impl OverwriteMode {
    pub(crate) fn parse(mode: &str) -> Result<Self, CoordinatorError> {
        match mode.to_ascii_lowercase().as_str() {
            "dynamic" => Ok(Self::Dynamic),
            "static" => Ok(Self::Static),
            other => Err(CoordinatorError::Query(format!(
                "tally.partition_overwrite_mode = {other}: use dynamic or static"
            ))),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TableInsert {
    pub table: String,
    pub overwrite: bool,
    /// The PARTITION clause as written: a column with its value (static) or alone
    /// (dynamic); `None` without a clause (every partition column dynamic).
    pub partition: Option<Vec<(String, Option<String>)>>,
    pub query: String,
}

/// Where an insert's rows go once checked against the table's partition columns.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct InsertTarget {
    /// Static partition values, outermost first: the folder the job writes under.
    pub fixed: Vec<(String, String)>,
    /// Partition columns whose values come from the query's last columns.
    pub dynamic: Vec<String>,
}

impl InsertTarget {
    /// The folder under the table's folder that the static values name.
    pub(crate) fn folder(&self, table_dir: &Path) -> PathBuf {
        self.fixed
            .iter()
            .fold(table_dir.to_path_buf(), |dir, (column, value)| {
                dir.join(format!("{column}={value}"))
            })
    }
}

impl TableInsert {
    /// Checks the statement against the table's partition columns (outermost first).
    pub(crate) fn target(&self, columns: &[String]) -> Result<InsertTarget, CoordinatorError> {
        let Some(partition) = &self.partition else {
            return Ok(InsertTarget {
                fixed: Vec::new(),
                dynamic: columns.to_vec(),
            });
        };
        let named: Vec<&str> = partition.iter().map(|(c, _)| c.as_str()).collect();
        if named != columns.iter().map(String::as_str).collect::<Vec<_>>() {
            return Err(CoordinatorError::Query(format!(
                "INSERT into {}: PARTITION names ({}), the table is partitioned by ({})",
                self.table,
                named.join(", "),
                if columns.is_empty() {
                    "nothing".to_string()
                } else {
                    columns.join(", ")
                }
            )));
        }
        let fixed: Vec<(String, String)> = partition
            .iter()
            .map_while(|(c, v)| v.clone().map(|v| (c.clone(), v)))
            .collect();
        if partition[fixed.len()..].iter().any(|(_, v)| v.is_some()) {
            return Err(CoordinatorError::Query(format!(
                "INSERT into {}: static partition values come before dynamic partition \
                 columns in PARTITION (...)",
                self.table
            )));
        }
        let dynamic = partition[fixed.len()..]
            .iter()
            .map(|(c, _)| c.clone())
            .collect();
        Ok(InsertTarget { fixed, dynamic })
    }
}

/// The insert in `sql`, if that is what it is.
pub(crate) fn parse_table_insert(sql: &str) -> Result<Option<TableInsert>, CoordinatorError> {
    let Ok(statements) = Parser::parse_sql(&SparkSqlDialect {}, sql) else {
        return Ok(None);
    };
    let [Statement::Insert(insert)] = statements.as_slice() else {
        return Ok(None);
    };
    let TableObject::TableName(name) = &insert.table else {
        return Ok(None);
    };
    let table = name.to_string().trim_matches('`').to_string();
    if !insert.columns.is_empty() {
        return Err(CoordinatorError::Query(format!(
            "INSERT into {table}: a column list is not supported: give every column, in the \
             table's order"
        )));
    }
    let Some(query) = &insert.source else {
        return Err(CoordinatorError::Query(format!(
            "INSERT into {table}: write the rows as a query (INSERT INTO {table} SELECT ...)"
        )));
    };
    let partition = insert
        .partitioned
        .as_ref()
        .map(|spec| {
            spec.iter()
                .map(|expr| partition_value(&table, expr))
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    Ok(Some(TableInsert {
        table,
        overwrite: insert.overwrite,
        partition,
        query: query.to_string(),
    }))
}

/// `col = 'value'` (static) or `col` (dynamic).
fn partition_value(
    table: &str,
    expr: &SqlExpr,
) -> Result<(String, Option<String>), CoordinatorError> {
    let (column, value) = match expr {
        SqlExpr::Identifier(column) => return Ok((column.value.to_ascii_lowercase(), None)),
        SqlExpr::BinaryOp {
            left,
            op: BinaryOperator::Eq,
            right,
        } => (left, right),
        other => {
            return Err(CoordinatorError::Query(format!(
                "INSERT into {table}: PARTITION ({other}) takes column = 'value' or a column"
            )));
        }
    };
    let SqlExpr::Identifier(column) = column.as_ref() else {
        return Err(CoordinatorError::Query(format!(
            "INSERT into {table}: {column} is not a partition column name"
        )));
    };
    let value = match value.as_ref() {
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
    let column = column.value.to_ascii_lowercase();
    check_partition_value(&column, &value)
        .map_err(|e| CoordinatorError::Query(format!("INSERT into {table}: {e}")))?;
    Ok((column, Some(value)))
}

/// Whether a folder entry is table data (files and partition folders), not a hidden file
/// such as `_tally_table.json` or a staging folder.
fn is_data(name: &str) -> bool {
    !name.starts_with('.') && !name.starts_with('_')
}

/// Puts the staged files in place under `target` (the folder the static values name):
/// `depth` levels of dynamic partition folders in `staging` are matched with the table's.
/// OVERWRITE empties each partition folder the job wrote (`Dynamic`) or everything under
/// `target` (`Static`) before the new files move in, named after the job. The caller holds
/// the table's exclusive pin, so no query lists or reads the folders meanwhile.
pub(crate) fn commit(
    staging: &Path,
    target: &Path,
    depth: usize,
    overwrite: Option<OverwriteMode>,
    job: &str,
) -> std::io::Result<()> {
    std::fs::create_dir_all(target)?;
    if overwrite == Some(OverwriteMode::Static) || (overwrite.is_some() && depth == 0) {
        empty_data(target)?;
    }
    if staging.exists() {
        for leaf in leaves(staging, depth)? {
            let relative = leaf.strip_prefix(staging).expect("a leaf is under staging");
            let partition = target.join(relative);
            std::fs::create_dir_all(&partition)?;
            if overwrite == Some(OverwriteMode::Dynamic) && depth > 0 {
                empty_data(&partition)?;
            }
            for entry in std::fs::read_dir(&leaf)? {
                let entry = entry?;
                let name = entry.file_name().to_string_lossy().to_string();
                std::fs::rename(entry.path(), partition.join(format!("part-{job}-{name}")))?;
            }
        }
        std::fs::remove_dir_all(staging)?;
    }
    Ok(())
}

/// The folders `depth` levels below `dir`.
fn leaves(dir: &Path, depth: usize) -> std::io::Result<Vec<PathBuf>> {
    if depth == 0 {
        return Ok(vec![dir.to_path_buf()]);
    }
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            found.extend(leaves(&path, depth - 1)?);
        }
    }
    Ok(found)
}

/// Removes the data files and partition folders in `dir`, keeping hidden entries.
fn empty_data(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if !is_data(&entry.file_name().to_string_lossy()) {
            continue;
        }
        if entry.file_type()?.is_dir() {
            std::fs::remove_dir_all(entry.path())?;
        } else {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn inserts_are_read_from_spark_sql() {
        let insert = parse_table_insert(
            "INSERT OVERWRITE TABLE clicks PARTITION (day = '2026-11-01') SELECT ad, n FROM s",
        )
        .unwrap()
        .unwrap();
        assert!(insert.overwrite);
        assert_eq!(insert.table, "clicks");
        assert_eq!(insert.query, "SELECT ad, n FROM s");
        let target = insert.target(&["day".to_string()]).unwrap();
        assert_eq!(
            target.fixed,
            vec![("day".to_string(), "2026-11-01".to_string())]
        );
        assert!(target.dynamic.is_empty());
        assert_eq!(
            target.folder(Path::new("/t")),
            PathBuf::from("/t/day=2026-11-01")
        );

        let columns = ["day".to_string(), "country".to_string()];
        let mixed = parse_table_insert(
            "INSERT OVERWRITE TABLE c PARTITION (day = '1', country) SELECT 1, 'DE'",
        )
        .unwrap()
        .unwrap();
        let target = mixed.target(&columns).unwrap();
        assert_eq!(target.dynamic, vec!["country".to_string()]);
        let plain = parse_table_insert("INSERT INTO c SELECT 1, '1', 'DE'")
            .unwrap()
            .unwrap();
        assert!(!plain.overwrite);
        assert_eq!(plain.target(&columns).unwrap().dynamic, columns.to_vec());
        assert!(plain.target(&[]).unwrap().dynamic.is_empty());

        let misplaced =
            parse_table_insert("INSERT INTO c PARTITION (day, country = 'DE') SELECT 1, '1'")
                .unwrap()
                .unwrap()
                .target(&columns)
                .unwrap_err()
                .to_string();
        assert!(misplaced.contains("come before"), "{misplaced}");
        let wrong = parse_table_insert("INSERT INTO c PARTITION (hour = 1) SELECT 1")
            .unwrap()
            .unwrap()
            .target(&columns)
            .unwrap_err()
            .to_string();
        assert!(wrong.contains("partitioned by (day, country)"), "{wrong}");
        let folder = parse_table_insert("INSERT INTO c PARTITION (day = 'a/b') SELECT 1")
            .unwrap_err()
            .to_string();
        assert!(folder.contains("cannot name a folder"), "{folder}");
        assert!(parse_table_insert("SELECT 1").unwrap().is_none());
    }

    fn stage(dir: &Path, files: &[&str]) -> PathBuf {
        let staging = dir.join(".staging");
        for file in files {
            let path = staging.join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, b"new").unwrap();
        }
        staging
    }

    #[test]
    fn overwrite_replaces_what_it_should_and_append_adds_files() {
        let dir = tempfile::tempdir().unwrap();
        let table = dir.path().join("t");
        for old in ["day=1/old.parquet", "day=2/old.parquet"] {
            std::fs::create_dir_all(table.join(old).parent().unwrap()).unwrap();
            std::fs::write(table.join(old), b"old").unwrap();
        }
        std::fs::write(table.join("_tally_table.json"), b"{}").unwrap();

        // Dynamic overwrite: day=1 replaced, day=2 kept, day=3 made.
        let staging = stage(
            dir.path(),
            &["day=1/part-00000.parquet", "day=3/part-00001.parquet"],
        );
        commit(&staging, &table, 1, Some(OverwriteMode::Dynamic), "a").unwrap();
        assert_eq!(
            names(&table),
            vec!["_tally_table.json", "day=1", "day=2", "day=3"]
        );
        assert_eq!(
            names(&table.join("day=1")),
            vec!["part-a-part-00000.parquet"]
        );
        assert_eq!(names(&table.join("day=2")), vec!["old.parquet"]);
        assert!(!staging.exists());

        // Append into one static partition.
        let staging = stage(dir.path(), &["part-00000.parquet"]);
        commit(&staging, &table.join("day=2"), 0, None, "b").unwrap();
        assert_eq!(
            names(&table.join("day=2")),
            vec!["old.parquet", "part-b-part-00000.parquet"]
        );

        // Static overwrite of the whole table: partitions the job did not write go too.
        let staging = stage(dir.path(), &["day=4/part-00000.parquet"]);
        commit(&staging, &table, 1, Some(OverwriteMode::Static), "c").unwrap();
        assert_eq!(names(&table), vec!["_tally_table.json", "day=4"]);

        // An overwrite that wrote no rows empties the partition.
        commit(
            &dir.path().join(".none"),
            &table.join("day=4"),
            0,
            Some(OverwriteMode::Dynamic),
            "d",
        )
        .unwrap();
        assert!(names(&table.join("day=4")).is_empty());
        assert_eq!(names(dir.path()), vec!["t"]);
    }
}
