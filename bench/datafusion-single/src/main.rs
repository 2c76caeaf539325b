//! `datafusion-single`: the queries of `bench/compare` on one DataFusion `SessionContext` in
//! this process, with as many partitions as the machine has cores, on the same Parquet files
//! Tally reads. It is the same DataFusion build Tally's workers run, so the ratio
//! Tally / datafusion-single is the cost (or gain) of distributing the work.
//!
//! For each query it runs `--warmup` unmeasured runs, then `--runs` measured ones, writes the
//! last answer as CSV to `<out>/<query>.csv` and prints one JSON line:
//! `{"query": NAME, "times_ms": [...], "rows": N}`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use datafusion::error::{DataFusionError, Result};
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};

#[derive(Parser, Debug)]
#[command(name = "datafusion-single")]
struct Args {
    /// A Parquet table: NAME=PATH (a file or a folder of files).
    #[arg(long = "table", value_name = "NAME=PATH")]
    tables: Vec<String>,
    /// A query to run: NAME=FILE holding one SQL statement.
    #[arg(long = "query", value_name = "NAME=FILE")]
    queries: Vec<String>,
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Folder for the answers, one CSV file per query.
    #[arg(long)]
    out: PathBuf,
}

fn name_value(spec: &str, flag: &str) -> Result<(String, String)> {
    spec.split_once('=')
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .ok_or_else(|| DataFusionError::Plan(format!("--{flag} {spec}: expected NAME=VALUE")))
}

async fn run(args: Args) -> Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(cores));
    for spec in &args.tables {
        let (name, path) = name_value(spec, "table")?;
        ctx.register_parquet(&name, &path, ParquetReadOptions::default())
            .await?;
    }
    std::fs::create_dir_all(&args.out)?;
    for spec in &args.queries {
        let (name, file) = name_value(spec, "query")?;
        let sql = std::fs::read_to_string(&file)?;
        let mut times_ms = Vec::new();
        let mut answer = Vec::new();
        for run in 0..args.warmup + args.runs {
            let started = Instant::now();
            answer = ctx.sql(&sql).await?.collect().await?;
            let elapsed = started.elapsed().as_secs_f64() * 1000.0;
            if run >= args.warmup {
                times_ms.push(elapsed);
            }
        }
        let csv = std::fs::File::create(args.out.join(format!("{name}.csv")))?;
        let mut writer = arrow::csv::WriterBuilder::new()
            .with_header(true)
            .build(csv);
        for batch in &answer {
            writer.write(batch)?;
        }
        let rows: usize = answer.iter().map(|b| b.num_rows()).sum();
        println!(
            "{}",
            serde_json::json!({"query": name, "times_ms": times_ms, "rows": rows})
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
