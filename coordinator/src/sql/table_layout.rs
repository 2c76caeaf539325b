//! The layout of a table made by `CREATE TABLE`: `_tally_table.json` in its folder records
//! the file columns and the partition columns with their types. An empty table has a
//! schema, partition values read from folder names take their declared types (a `DATE`
//! partition column is a date, not text), and the table registers again after a restart
//! from its folder alone. Folders without the file (registered Hive folders) keep their
//! partitions as text columns found from the folder names.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use serde_json::{Value, json};

use crate::error::CoordinatorError;

pub(crate) const LAYOUT_FILE: &str = "_tally_table.json";

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TableLayout {
    /// The columns stored in the Parquet files.
    pub file_schema: SchemaRef,
    /// The partition columns, outermost folder level first.
    pub partition_by: Vec<(String, DataType)>,
}

impl TableLayout {
    /// Splits `schema` (every column of the table) into file and partition columns.
    pub(crate) fn from_table_schema(
        schema: &Schema,
        partition_by: &[String],
    ) -> Result<Self, CoordinatorError> {
        let mut partitions = Vec::new();
        for name in partition_by {
            let field = schema.field_with_name(name).map_err(|_| {
                CoordinatorError::Query(format!("partition column {name} is not a column"))
            })?;
            partitions.push((field.name().clone(), field.data_type().clone()));
        }
        let files: Vec<Field> = schema
            .fields()
            .iter()
            .filter(|f| !partition_by.contains(f.name()))
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect();
        if files.is_empty() {
            return Err(CoordinatorError::Query(
                "a table needs at least one column that is not a partition column".to_string(),
            ));
        }
        Ok(Self {
            file_schema: Arc::new(Schema::new(files)),
            partition_by: partitions,
        })
    }

    /// Every column: the file columns, then the partition columns.
    pub(crate) fn table_schema(&self) -> Schema {
        let mut fields: Vec<Field> = self
            .file_schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.extend(
            self.partition_by
                .iter()
                .map(|(name, data_type)| Field::new(name, data_type.clone(), true)),
        );
        Schema::new(fields)
    }

    pub(crate) fn partition_names(&self) -> Vec<String> {
        self.partition_by.iter().map(|(n, _)| n.clone()).collect()
    }

    /// The layout recorded in table folder `dir`, if it has one.
    pub(crate) fn read(dir: &Path) -> Result<Option<Self>, CoordinatorError> {
        let path = dir.join(LAYOUT_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(CoordinatorError::Internal(format!(
                    "{}: {e}",
                    path.display()
                )));
            }
        };
        let bad = |why: &str| CoordinatorError::Internal(format!("{}: {why}", path.display()));
        let value: Value = serde_json::from_str(&text).map_err(|e| bad(&e.to_string()))?;
        let columns = |key: &str| -> Result<Vec<(String, DataType)>, CoordinatorError> {
            value[key]
                .as_array()
                .ok_or_else(|| bad(&format!("no {key} list")))?
                .iter()
                .map(|column| {
                    let name = column["name"]
                        .as_str()
                        .ok_or_else(|| bad("a column without name"))?;
                    let data_type = column["type"]
                        .as_str()
                        .ok_or_else(|| bad("a column without type"))?;
                    let data_type =
                        DataType::from_str(data_type).map_err(|e| bad(&e.to_string()))?;
                    Ok((name.to_string(), data_type))
                })
                .collect()
        };
        let files = columns("columns")?
            .into_iter()
            .map(|(name, data_type)| Field::new(name, data_type, true))
            .collect::<Vec<_>>();
        Ok(Some(Self {
            file_schema: Arc::new(Schema::new(files)),
            partition_by: columns("partition_by")?,
        }))
    }

    pub(crate) fn write(&self, dir: &Path) -> Result<(), CoordinatorError> {
        let column =
            |name: &str, data_type: &DataType| json!({"name": name, "type": data_type.to_string()});
        let layout = json!({
            "columns": self.file_schema.fields().iter().map(|f| column(f.name(), f.data_type())).collect::<Vec<_>>(),
            "partition_by": self.partition_by.iter().map(|(n, t)| column(n, t)).collect::<Vec<_>>(),
        });
        let path = dir.join(LAYOUT_FILE);
        let text = serde_json::to_string_pretty(&layout).expect("a JSON value serializes");
        std::fs::write(&path, text)
            .map_err(|e| CoordinatorError::Internal(format!("{}: {e}", path.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_layout_survives_its_file_with_types() {
        let schema = Schema::new(vec![
            Field::new("ad", DataType::Int64, false),
            Field::new("revenue", DataType::Decimal128(15, 2), true),
            Field::new("day", DataType::Date32, true),
            Field::new("country", DataType::Utf8, true),
        ]);
        let layout =
            TableLayout::from_table_schema(&schema, &["day".to_string(), "country".to_string()])
                .unwrap();
        assert_eq!(layout.file_schema.fields().len(), 2);
        assert_eq!(layout.partition_names(), vec!["day", "country"]);
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(TableLayout::read(dir.path()).unwrap(), None);
        layout.write(dir.path()).unwrap();
        let read = TableLayout::read(dir.path()).unwrap().unwrap();
        assert_eq!(read, layout);
        assert_eq!(read.table_schema().field(2).data_type(), &DataType::Date32);
        let err = TableLayout::from_table_schema(&schema, &["hour".to_string()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("hour"), "{err}");
    }
}
