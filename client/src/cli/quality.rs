//! `tally check` and `tally profile`: a table's expectations checked, or its columns
//! profiled, in one job each (the work is in `crate::quality`); the report goes to stdout
//! as a table or JSON, a one-line summary to stderr.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use super::target::Target;
use super::{CheckArgs, ProfileArgs, ReportFormat, parse_settings};
use crate::client::Client;
use crate::error::ClientError;
use crate::quality::{
    ATTACHED_FILE, Check, check_table, profile_table, profile_table_text, read_expectations,
    report_table, table_folder, table_info, unix_now,
};

pub(crate) async fn check(args: CheckArgs) -> Result<(), ClientError> {
    // A file given on the command line is read before any cluster starts: a malformed one
    // fails at once.
    let given = args.attach.as_ref().or(args.expectations.as_ref());
    let checks = given.map(|path| read_expectations(path)).transpose()?;
    let settings = parse_settings(&args.settings)?;
    let target = Target::open(&args.target, None).await?;
    let outcome = run_check(&target.client, &args, checks, &settings).await;
    target.close().await;
    outcome
}

async fn run_check(
    client: &Client,
    args: &CheckArgs,
    given: Option<Vec<Check>>,
    settings: &BTreeMap<String, String>,
) -> Result<(), ClientError> {
    let table = table_info(client, &args.table).await?;
    let folder = table_folder(&table);
    let checks = match given {
        Some(checks) => checks,
        None => {
            let attached = folder.as_ref().map(|f| f.join(ATTACHED_FILE));
            match attached {
                Some(path) if path.exists() => read_expectations(&path)?,
                _ => {
                    return Err(ClientError::Query(format!(
                        "table {} has no expectations attached: give --expectations FILE, or \
                         attach one with --attach FILE",
                        table.name
                    )));
                }
            }
        }
    };
    if args.attach.is_some() && folder.is_none() {
        return Err(ClientError::Query(format!(
            "--attach: table {} is not a folder on this machine ({}); check it with \
             --expectations FILE instead",
            table.name, table.path
        )));
    }
    let report = check_table(client, &table, &checks, unix_now(), settings).await?;
    // Attached only once the checks have run: the file's predicates plan on this table.
    if let (Some(file), Some(folder)) = (&args.attach, &folder) {
        attach(file, folder)?;
        eprintln!(
            "attached {} to table {} as {}",
            file.display(),
            table.name,
            folder.join(ATTACHED_FILE).display()
        );
    }
    let text = match args.format {
        ReportFormat::Table => report_table(&report)? + "\n",
        ReportFormat::Json => json(&report)?,
    };
    print(&text)?;
    let failed = report.failed();
    eprintln!(
        "{} checks, {} failed, on {} rows in {} ms (job {})",
        report.checks.len(),
        failed.len(),
        report.rows,
        report.elapsed_ms,
        report.job_id
    );
    if failed.is_empty() {
        Ok(())
    } else {
        let names: Vec<&str> = failed.iter().map(|c| c.name.as_str()).collect();
        Err(ClientError::ChecksFailed {
            failed: failed.len(),
            total: report.checks.len(),
            names: names.join(", "),
        })
    }
}

/// Copies the expectations into the table folder, in place at once (a rename).
fn attach(file: &Path, folder: &Path) -> Result<(), ClientError> {
    let text = std::fs::read(file)
        .map_err(|e| ClientError::Local(format!("cannot read {}: {e}", file.display())))?;
    let staged = folder.join(format!("{ATTACHED_FILE}.tmp"));
    let write = std::fs::write(&staged, text)
        .and_then(|()| std::fs::rename(&staged, folder.join(ATTACHED_FILE)));
    write.map_err(|e| {
        ClientError::Local(format!(
            "cannot attach the expectations to {}: {e}",
            folder.display()
        ))
    })
}

pub(crate) async fn profile(args: ProfileArgs) -> Result<(), ClientError> {
    let settings = parse_settings(&args.settings)?;
    let target = Target::open(&args.target, None).await?;
    let outcome = async {
        let table = table_info(&target.client, &args.table).await?;
        let profile = profile_table(&target.client, &table.name, &table.schema, &settings).await?;
        let text = match args.format {
            ReportFormat::Table => profile_table_text(&profile)? + "\n",
            ReportFormat::Json => json(&profile)?,
        };
        print(&text)?;
        eprintln!(
            "{} columns of {} rows in {} ms (job {})",
            profile.columns.len(),
            profile.rows,
            profile.elapsed_ms,
            profile.job_id
        );
        Ok(())
    }
    .await;
    target.close().await;
    outcome
}

fn json(value: &impl serde::Serialize) -> Result<String, ClientError> {
    serde_json::to_string_pretty(value)
        .map(|s| s + "\n")
        .map_err(|e| ClientError::Local(e.to_string()))
}

fn print(text: &str) -> Result<(), ClientError> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}
