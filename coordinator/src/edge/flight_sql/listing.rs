//! What Flight SQL clients ask before they query: the server's description (`GetSqlInfo`)
//! and the catalog, schema, table and table-type listings, from the coordinator's catalog.
//! Tally has one catalog and one schema, DataFusion's defaults, under which every table is.

use std::sync::LazyLock;

use arrow::array::RecordBatch;
use arrow_flight::sql::metadata::{SqlInfoData, SqlInfoDataBuilder};
use arrow_flight::sql::{
    CommandGetCatalogs, CommandGetDbSchemas, CommandGetTableTypes, CommandGetTables, SqlInfo,
    SqlSupportedTransaction,
};

use crate::error::CoordinatorError;
use crate::sql::catalog::TableView;

pub(super) const CATALOG: &str = "datafusion";
pub(super) const SCHEMA: &str = "public";
const TABLE: &str = "TABLE";
/// A materialized view is read like a table; clients list it as a view.
const VIEW: &str = "VIEW";

pub(super) static SQL_INFO: LazyLock<SqlInfoData> = LazyLock::new(|| {
    let mut builder = SqlInfoDataBuilder::new();
    builder.append(SqlInfo::FlightSqlServerName, "Tally");
    builder.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    builder.append(SqlInfo::FlightSqlServerArrowVersion, "59");
    builder.append(SqlInfo::FlightSqlServerReadOnly, false);
    builder.append(SqlInfo::FlightSqlServerSql, true);
    builder.append(SqlInfo::FlightSqlServerSubstrait, false);
    builder.append(
        SqlInfo::FlightSqlServerTransaction,
        SqlSupportedTransaction::None as i32,
    );
    builder.append(SqlInfo::FlightSqlServerCancel, false);
    builder.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
    builder.append(SqlInfo::SqlDdlCatalog, false);
    builder.append(SqlInfo::SqlDdlSchema, false);
    builder.append(SqlInfo::SqlDdlTable, true);
    builder
        .build()
        .expect("the server's SQL info is well formed")
});

fn internal(e: arrow_flight::error::FlightError) -> CoordinatorError {
    CoordinatorError::Internal(format!("building a listing: {e}"))
}

pub(super) fn catalogs(query: CommandGetCatalogs) -> Result<RecordBatch, CoordinatorError> {
    let mut builder = query.into_builder();
    builder.append(CATALOG);
    builder.build().map_err(internal)
}

pub(super) fn schemas(query: CommandGetDbSchemas) -> Result<RecordBatch, CoordinatorError> {
    let mut builder = query.into_builder();
    builder.append(CATALOG, SCHEMA);
    builder.build().map_err(internal)
}

pub(super) fn table_types(query: CommandGetTableTypes) -> Result<RecordBatch, CoordinatorError> {
    let mut builder = query.into_builder();
    builder.append(TABLE);
    builder.append(VIEW);
    builder.build().map_err(internal)
}

/// The tables, filtered as the command asks (the builder applies its patterns).
pub(super) fn tables(
    query: CommandGetTables,
    tables: &[TableView],
) -> Result<RecordBatch, CoordinatorError> {
    let mut builder = query.into_builder();
    for table in tables {
        let kind = if table.view.is_some() { VIEW } else { TABLE };
        builder
            .append(CATALOG, SCHEMA, &table.name, kind, &table.schema)
            .map_err(internal)?;
    }
    builder.build().map_err(internal)
}
