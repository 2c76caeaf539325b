//! Tables: a name bound to Parquet or CSV files on the shared filesystem. The coordinator
//! reads only their schemas and footers; workers read the data.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::execution::options::{CsvReadOptions, ParquetReadOptions};
use datafusion::prelude::SessionContext;

use tally_common::bucketing::BucketSpec;

use crate::bucketed_table::BucketedTable;
use crate::error::CoordinatorError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableFormat {
    Parquet,
    Csv,
}

impl TableFormat {
    pub fn parse(format: &str) -> Result<Self, CoordinatorError> {
        match format.to_ascii_lowercase().as_str() {
            "parquet" => Ok(Self::Parquet),
            "csv" => Ok(Self::Csv),
            other => Err(CoordinatorError::Query(format!(
                "unsupported table format '{other}': use parquet or csv"
            ))),
        }
    }

    /// A file by its extension; a folder by the files in it.
    pub fn guess(path: &Path) -> Result<Self, CoordinatorError> {
        let by_extension = |p: &Path| match p.extension().and_then(|e| e.to_str()) {
            Some(ext) if ext.eq_ignore_ascii_case("parquet") => Some(Self::Parquet),
            Some(ext) if ext.eq_ignore_ascii_case("csv") => Some(Self::Csv),
            _ => None,
        };
        if path.is_dir() {
            let entries = std::fs::read_dir(path)
                .map_err(|e| CoordinatorError::Query(format!("{}: {e}", path.display())))?;
            for entry in entries.flatten() {
                if let Some(format) = by_extension(&entry.path()) {
                    return Ok(format);
                }
            }
        } else if let Some(format) = by_extension(path) {
            return Ok(format);
        }
        Err(CoordinatorError::Query(format!(
            "cannot tell the format of {}: name files *.parquet or *.csv, or give the format",
            path.display()
        )))
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Parquet => "parquet",
            Self::Csv => "csv",
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct TableEntry {
    pub name: String,
    pub path: PathBuf,
    pub format: TableFormat,
    pub bucketing: Option<BucketSpec>,
}

/// Registers `path` as table `name` in `ctx`, replacing a table of the same name.
pub(crate) async fn register_table(
    ctx: &SessionContext,
    name: &str,
    path: &str,
    format: Option<TableFormat>,
) -> Result<TableEntry, CoordinatorError> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(CoordinatorError::Query(format!(
            "invalid table name '{name}': use letters, digits and _"
        )));
    }
    let path = std::fs::canonicalize(path).map_err(|e| {
        CoordinatorError::NotFound(format!("table {name}: cannot open {path}: {e}"))
    })?;
    let format = match format {
        Some(format) => format,
        None => TableFormat::guess(&path)?,
    };
    let location = path.to_string_lossy().to_string();
    let location = if path.is_dir() && !location.ends_with('/') {
        format!("{location}/")
    } else {
        location
    };
    ctx.deregister_table(name)
        .map_err(CoordinatorError::from_datafusion)?;
    let registered = match format {
        TableFormat::Parquet => {
            ctx.register_parquet(name, &location, ParquetReadOptions::default())
                .await
        }
        TableFormat::Csv => {
            let options =
                CsvReadOptions::new().file_extension(if path.is_dir() { ".csv" } else { "" });
            ctx.register_csv(name, &location, options).await
        }
    };
    registered.map_err(|e| {
        CoordinatorError::Query(format!(
            "table {name} at {}: {}",
            path.display(),
            crate::error::one_line(&e.to_string())
        ))
    })?;
    let bucketing = match format {
        TableFormat::Parquet if path.is_dir() => {
            BucketSpec::read(&path).map_err(CoordinatorError::from_datafusion)?
        }
        _ => None,
    };
    if let Some(spec) = &bucketing {
        let files = ctx
            .table_provider(name)
            .await
            .map_err(CoordinatorError::from_datafusion)?;
        spec.partitioning(&files.schema())
            .map_err(|e| CoordinatorError::Query(format!("table {name}: {e}")))?;
        ctx.deregister_table(name)
            .map_err(CoordinatorError::from_datafusion)?;
        ctx.register_table(name, Arc::new(BucketedTable::new(files, spec.clone())))
            .map_err(CoordinatorError::from_datafusion)?;
    }
    Ok(TableEntry {
        name: name.to_string(),
        path,
        format,
        bucketing,
    })
}
