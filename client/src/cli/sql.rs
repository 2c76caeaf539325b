//! `tally sql`: run statements against a coordinator, or an embedded cluster made for this
//! one command, and print their answers.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};

use super::progress::ProgressLine;
use super::statements::{parse_set, split_statements};
use super::target::Target;
use super::{SqlArgs, parse_settings};

use crate::client::{Client, JobMetrics};
use crate::error::ClientError;
use crate::output::{summarize, write_batches};

pub(crate) async fn run_sql(args: SqlArgs) -> Result<(), ClientError> {
    let mut settings = parse_settings(&args.settings)?;
    if let Some(planner) = &args.planner {
        settings.insert("tally.planner".to_string(), planner.clone());
    }
    let script = match (&args.execute, &args.file) {
        (Some(sql), _) => Some(sql.clone()),
        (None, Some(path)) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| ClientError::Query(format!("cannot read {}: {e}", path.display())))?,
        ),
        (None, None) => None,
    };

    let target = Target::open(&args.target, Some(&args.lineage)).await?;
    let outcome = match script {
        Some(script) => run_script(&target.client, &args, &script, &mut settings).await,
        None => interactive(&target.client, &args, &mut settings).await,
    };
    target.close().await;
    outcome
}

async fn run_script(
    client: &Client,
    args: &SqlArgs,
    script: &str,
    settings: &mut BTreeMap<String, String>,
) -> Result<(), ClientError> {
    let statements = split_statements(script);
    if statements.is_empty() {
        return Err(ClientError::Query("no SQL to run".to_string()));
    }
    let mut last_metrics = None;
    for statement in statements {
        if let Some(metrics) = run_statement(client, args, &statement, settings).await? {
            last_metrics = Some(metrics);
        }
    }
    if let (Some(path), Some(metrics)) = (&args.metrics_json, last_metrics) {
        let json = serde_json::to_string_pretty(&metrics)
            .map_err(|e| ClientError::Local(e.to_string()))?;
        std::fs::write(path, json + "\n")
            .map_err(|e| ClientError::Local(format!("cannot write {}: {e}", path.display())))?;
    }
    Ok(())
}

/// Runs one statement; SET is kept by the client and applied to later jobs.
async fn run_statement(
    client: &Client,
    args: &SqlArgs,
    statement: &str,
    settings: &mut BTreeMap<String, String>,
) -> Result<Option<JobMetrics>, ClientError> {
    if let Some((key, value)) = parse_set(statement) {
        settings.insert(key, value);
        return Ok(None);
    }
    // Ctrl-C while the job runs cancels it on the cluster (its tasks stop, its spool is freed).
    // The handler is in place before the job exists, so no Ctrl-C falls between the two.
    let interrupt = interrupted()?;
    let job_id = client.submit(statement, settings).await?;
    let progress = ProgressLine::start(args.quiet);
    let status = tokio::select! {
        status = client.wait_with_progress(&job_id, |job| progress.update(job)) => status,
        _ = interrupt => {
            // The line is erased when `progress` drops, before the error prints.
            client.cancel(&job_id).await?;
            return Err(ClientError::Interrupted { job_id: job_id.to_string() });
        }
    };
    // The line goes before the answer (or the error) prints.
    progress.finish();
    let status = status?;
    let result = client.fetch_results(&status).await?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    write_batches(&mut out, args.format, &result.schema, &result.batches)
        .map_err(|e| ClientError::Local(format!("printing the answer: {e}")))?;
    out.flush()?;
    if !args.quiet && !result.schema.fields().is_empty() {
        eprint!("{}", summarize(&result.metrics, result.num_rows()));
    }
    Ok(Some(result.metrics))
}

async fn interactive(
    client: &Client,
    args: &SqlArgs,
    settings: &mut BTreeMap<String, String>,
) -> Result<(), ClientError> {
    eprintln!(
        "Connected to {}. End statements with `;`, quit with \\q.",
        client.endpoint()
    );
    let stdin = std::io::stdin();
    let mut buffer = String::new();
    prompt(&buffer);
    for line in stdin.lock().lines() {
        let line = line?;
        if buffer.is_empty() && matches!(line.trim(), "\\q" | "exit" | "quit") {
            break;
        }
        buffer.push_str(&line);
        buffer.push('\n');
        if line.trim_end().ends_with(';') {
            for statement in split_statements(&buffer) {
                if let Err(e) = run_statement(client, args, &statement, settings).await {
                    eprintln!("error: {e}");
                }
            }
            buffer.clear();
        }
        prompt(&buffer);
    }
    Ok(())
}

fn prompt(buffer: &str) {
    eprint!(
        "{}",
        if buffer.is_empty() {
            "tally> "
        } else {
            "   ... "
        }
    );
    let _ = std::io::stderr().flush();
}

/// Resolves at the next Ctrl-C (SIGINT); listening starts when this is called.
fn interrupted() -> Result<impl std::future::Future<Output = ()>, ClientError> {
    #[cfg(unix)]
    {
        let mut signal = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
        Ok(async move {
            signal.recv().await;
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}
