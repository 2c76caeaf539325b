//! Data-quality checks and profiling on the client side: expectations are parsed and bound
//! to the table's schema here (`expectations.rs`), turned into one aggregate query
//! (`query.rs`, `profile.rs`) that the cluster runs as one job with partial aggregates like
//! any other, and the single answer row is read back into verdicts (`results.rs`).
//! Nothing on the coordinator or the workers knows about checks.

mod expectations;
mod profile;
mod query;
mod results;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use expectations::{ATTACHED_FILE, Check, Expectation, Literal, bind, parse_expectations};
pub use profile::{ColumnProfile, Profile, QUANTILES, profile_table, profile_table_text};
pub use query::{CheckQuery, check_query, quote_ident};
pub use results::{CheckReport, CheckResult, evaluate, report_table};

use crate::client::Client;
use crate::error::ClientError;
use crate::model::TableInfo;

/// The registered table `name`, with its schema and path.
pub async fn table_info(client: &Client, name: &str) -> Result<TableInfo, ClientError> {
    client
        .list_tables()
        .await?
        .into_iter()
        .find(|t| t.name == name)
        .ok_or_else(|| {
            ClientError::Query(format!(
                "table {name} not found: `tally tables` lists the tables; register one with \
                 --table {name}=PATH or CREATE EXTERNAL TABLE"
            ))
        })
}

/// Reads and parses an expectations file.
pub fn read_expectations(path: &Path) -> Result<Vec<Check>, ClientError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ClientError::Query(format!("cannot read expectations {}: {e}", path.display()))
    })?;
    parse_expectations(&text, &path.display().to_string())
}

/// The folder of a table that lives in a local folder (where expectations are attached).
pub fn table_folder(table: &TableInfo) -> Option<PathBuf> {
    let path = Path::new(&table.path);
    (path.is_absolute() && path.is_dir()).then(|| path.to_path_buf())
}

/// Runs every check of `checks` on `table` as one job with the session `settings`;
/// freshness is measured against `now` (Unix seconds). Columns are checked against the
/// table's schema first, so a wrong name costs no job.
pub async fn check_table(
    client: &Client,
    table: &TableInfo,
    checks: &[Check],
    now: i64,
    settings: &BTreeMap<String, String>,
) -> Result<CheckReport, ClientError> {
    bind(checks, &table.name, &table.schema)?;
    let query = check_query(&table.name, checks);
    let result = client.sql_with_settings(&query.sql, settings).await?;
    let row = results::answer_row(&result.batches)?;
    let checks = evaluate(checks, &query, &row, now)?;
    Ok(CheckReport {
        table: table.name.clone(),
        job_id: result.metrics.job_id.clone(),
        rows: row.first().and_then(results::as_i64).unwrap_or_default(),
        elapsed_ms: result.metrics.elapsed_ms,
        passed: checks.iter().all(|c| c.passed),
        checks,
    })
}

/// Unix seconds now, by this machine's clock.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}
