//! Hive-style partitioned folders: `clicks/day=2026-11-01/country=DE/part-0.parquet`. The
//! `name=value` levels become columns of the table (text, as Hive's partition values are
//! text in the path), and DataFusion's listing table prunes the folders a query's filters on
//! them exclude before any file is opened (`WHERE day = '2026-11-01'` reads one folder).

use std::path::{Path, PathBuf};

use arrow::datatypes::DataType;

use super::table_layout::TableLayout;
use crate::error::CoordinatorError;

/// The partition columns of table folder `root` with their types: as `CREATE TABLE`
/// declared them, else found from the folder names (as text).
pub(crate) fn table_partitions(root: &Path) -> Result<Vec<(String, DataType)>, CoordinatorError> {
    match TableLayout::read(root)? {
        Some(layout) => Ok(layout.partition_by),
        None => found_partitions(root),
    }
}

/// The partition columns found from the folder names of `root`, as text.
pub(crate) fn found_partitions(root: &Path) -> Result<Vec<(String, DataType)>, CoordinatorError> {
    Ok(partition_columns(root)?
        .into_iter()
        .map(|column| (column, DataType::Utf8))
        .collect())
}

/// The partition columns of the folder `root`, outermost first: the `name=value` levels of
/// its first partition folder. Hidden folders (`.`, `_`) are not partitions.
pub(crate) fn partition_columns(root: &Path) -> Result<Vec<String>, CoordinatorError> {
    let mut columns = Vec::new();
    let mut dir = root.to_path_buf();
    while let Some((column, next)) = first_partition(&dir)? {
        if columns.contains(&column) {
            return Err(CoordinatorError::Query(format!(
                "{}: partition column {column} appears twice in one path",
                root.display()
            )));
        }
        columns.push(column);
        dir = next;
    }
    Ok(columns)
}

fn first_partition(dir: &Path) -> Result<Option<(String, PathBuf)>, CoordinatorError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| CoordinatorError::Query(format!("{}: {e}", dir.display())))?;
    let mut found: Vec<(String, PathBuf)> = entries
        .flatten()
        .filter(|e| e.path().is_dir())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let (column, _) = name.split_once('=')?;
            let hidden = name.starts_with('.') || name.starts_with('_');
            (!hidden && !column.is_empty()).then(|| (column.to_string(), e.path()))
        })
        .collect();
    found.sort();
    Ok(found.into_iter().next())
}

/// The first data file under `dir`, looking into partition folders.
pub(crate) fn first_file(dir: &Path) -> Option<PathBuf> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    for path in &entries {
        if path.is_file() {
            return Some(path.clone());
        }
    }
    entries
        .iter()
        .filter(|p| {
            p.is_dir()
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().contains('='))
        })
        .find_map(|p| first_file(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_levels_become_columns_outermost_first() {
        let root = tempfile::tempdir().unwrap();
        let leaf = root.path().join("day=2026-11-01").join("country=DE");
        std::fs::create_dir_all(&leaf).unwrap();
        std::fs::write(leaf.join("part-0.parquet"), b"x").unwrap();
        std::fs::create_dir_all(root.path().join("_temporary")).unwrap();
        assert_eq!(
            partition_columns(root.path()).unwrap(),
            vec!["day".to_string(), "country".to_string()]
        );
        assert_eq!(
            first_file(root.path()).unwrap(),
            leaf.join("part-0.parquet")
        );
        assert!(partition_columns(&leaf).unwrap().is_empty());
    }
}
