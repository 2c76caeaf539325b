//! A table's file format: given, or told by the extension of its files.

use std::path::Path;

use arrow::datatypes::DataType;
use datafusion::execution::options::{CsvReadOptions, ParquetReadOptions};
use datafusion::prelude::SessionContext;

use super::table_layout::{LAYOUT_FILE, TableLayout};
use crate::error::CoordinatorError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableFormat {
    Parquet,
    Csv,
    /// A Kafka topic (`CREATE EXTERNAL TABLE ... STORED AS KAFKA`), never a file.
    Kafka,
}

impl TableFormat {
    pub fn parse(format: &str) -> Result<Self, CoordinatorError> {
        match format.to_ascii_lowercase().as_str() {
            "parquet" => Ok(Self::Parquet),
            "csv" => Ok(Self::Csv),
            "kafka" => Ok(Self::Kafka),
            other => Err(CoordinatorError::Query(format!(
                "unsupported table format '{other}': use parquet, csv or kafka"
            ))),
        }
    }

    /// A file's format by its extension.
    pub fn of_file(path: &Path) -> Option<Self> {
        match path.extension().and_then(|e| e.to_str()) {
            Some(ext) if ext.eq_ignore_ascii_case("parquet") => Some(Self::Parquet),
            Some(ext) if ext.eq_ignore_ascii_case("csv") => Some(Self::Csv),
            _ => None,
        }
    }

    /// A file by its extension; a folder by the files in it.
    pub fn guess(path: &Path) -> Result<Self, CoordinatorError> {
        let by_extension = Self::of_file;
        if path.is_dir() {
            if path.join(LAYOUT_FILE).exists() {
                return Ok(Self::Parquet);
            }
            let entries = std::fs::read_dir(path)
                .map_err(|e| CoordinatorError::Query(format!("{}: {e}", path.display())))?;
            for entry in entries.flatten() {
                if let Some(format) = by_extension(&entry.path()) {
                    return Ok(format);
                }
            }
            // A Hive-style partitioned folder holds its files in `name=value` folders.
            if let Some(format) = super::hive_partitions::first_file(path)
                .as_deref()
                .and_then(by_extension)
            {
                return Ok(format);
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
            Self::Kafka => "kafka",
        }
    }
}

impl TableFormat {
    /// Registers the files at `location` (a folder, or one file when `one_file`) as table
    /// `name` in `ctx`, replacing a table of that name; `shown` names the location in errors.
    pub(crate) async fn register(
        self,
        ctx: &SessionContext,
        name: &str,
        location: &str,
        one_file: bool,
        shown: &str,
    ) -> Result<(), CoordinatorError> {
        ctx.deregister_table(name)
            .map_err(CoordinatorError::from_datafusion)?;
        // Hive-style partition folders of a local table become columns: typed as `CREATE
        // TABLE` recorded them (with the file columns, so an empty table has a schema), else
        // text.
        let local_folder = location.starts_with('/') && !one_file;
        let layout = if local_folder {
            TableLayout::read(Path::new(location))?
        } else {
            None
        };
        let partitions: Vec<(String, DataType)> = match &layout {
            Some(layout) => layout.partition_by.clone(),
            None if local_folder => super::hive_partitions::found_partitions(Path::new(location))?,
            None => Vec::new(),
        };
        let registered = match self {
            TableFormat::Parquet => {
                let mut options = ParquetReadOptions::default().table_partition_cols(partitions);
                if let Some(layout) = &layout {
                    options = options.schema(&layout.file_schema);
                }
                ctx.register_parquet(name, location, options).await
            }
            TableFormat::Csv => {
                let extension = if one_file { "" } else { ".csv" };
                let options = CsvReadOptions::new()
                    .file_extension(extension)
                    .table_partition_cols(partitions);
                ctx.register_csv(name, location, options).await
            }
            TableFormat::Kafka => {
                return Err(CoordinatorError::Query(format!(
                    "table {name}: a Kafka topic is declared with its columns: CREATE EXTERNAL \
                     TABLE {name} (<columns>) STORED AS KAFKA LOCATION 'host:port/topic'"
                )));
            }
        };
        registered.map_err(|e| {
            CoordinatorError::Query(format!(
                "table {name} at {shown}: {}",
                crate::error::one_line(&e.to_string())
            ))
        })
    }
}
