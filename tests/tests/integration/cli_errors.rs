//! What a person sees when a `tally` command fails: a non-zero exit and exactly one line on
//! stderr that says what failed (and what to do when the cause does not say), with no log
//! line of the embedded cluster before it and no cause repeated.

use std::path::Path;
use std::process::Command;

use tally_common::auth::{ClusterToken, TOKEN_ENV};
use tally_tests::harness::tally_binary;
use tally_tests::process::{Process, free_port};

/// Runs `tally args...` in `dir` with a clean logging environment; returns its stderr after
/// checking that it failed.
fn failing(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let output = Command::new(tally_binary())
        .args(args)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .env_remove(TOKEN_ENV)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        !output.status.success(),
        "tally {} succeeded: {stderr}",
        args.join(" ")
    );
    stderr
}

/// A job id (12 hex digits after "job ") as `JOB`, so lines can be compared exactly.
fn without_job_id(line: &str) -> String {
    match line.split_once("job ") {
        Some((before, after))
            if after.len() >= 12 && after[..12].chars().all(|c| c.is_ascii_hexdigit()) =>
        {
            format!("{before}job JOB{}", &after[12..])
        }
        _ => line.to_string(),
    }
}

#[test]
fn common_failures_of_an_embedded_cluster_are_one_exact_line() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let missing = root.join("missing");
    let missing_table = format!("t={}", missing.display());
    let cases: Vec<(&str, Vec<&str>, String)> = vec![
        (
            "unknown table",
            vec!["sql", "--workers", "1", "-e", "SELECT * FROM nope"],
            "error: table nope not found: `tally tables` lists the tables; register one with \
             --table nope=PATH or CREATE EXTERNAL TABLE"
                .to_string(),
        ),
        (
            "bad path",
            vec!["sql", "--workers", "1", "--table", &missing_table, "-e", "SELECT 1"],
            format!(
                "error: table t: cannot open {}: No such file or directory (os error 2)",
                missing.display()
            ),
        ),
        (
            "division by zero",
            vec!["sql", "--workers", "2", "-e", "SELECT 1/0"],
            "error: job JOB failed: Divide by zero error".to_string(),
        ),
        (
            "bad setting",
            vec!["sql", "--workers", "1", "-e", "SET tally.nope = 1; SELECT 1"],
            "error: setting tally.nope = 1: Config value \"nope\" not found on TallyOptions"
                .to_string(),
        ),
        (
            "unreachable coordinator",
            vec!["sql", "--coordinator", "127.0.0.1:1", "-e", "SELECT 1"],
            "error: cannot reach the coordinator at 127.0.0.1:1: Connection refused (os error 111) (is `tally local` or `tally coordinator` running there?)".to_string(),
        ),
    ];
    for (name, args, expected) in cases {
        let stderr = failing(&root, &args, &[]);
        assert_eq!(
            without_job_id(stderr.trim_end()),
            expected,
            "{name}: the whole of stderr"
        );
    }
}

#[test]
fn a_wrong_token_is_one_line_that_says_where_the_token_goes() {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = format!("127.0.0.1:{}", free_port());
    let token = ClusterToken::random();
    let (_coordinator, _) = Process::start_with_env(
        "coordinator",
        &["coordinator", "--bind", &endpoint],
        &[(TOKEN_ENV, token.expose_secret())],
    );
    let wrong = ClusterToken::random();
    let stderr = failing(
        dir.path(),
        &["sql", "--coordinator", &endpoint, "-e", "SELECT 1"],
        &[(TOKEN_ENV, wrong.expose_secret())],
    );
    assert_eq!(
        stderr.trim_end(),
        format!(
            "error: {endpoint} refused the call: wrong cluster token: the token sent does not match this cluster's (give the cluster's token with --token-file FILE or TALLY_TOKEN)"
        )
    );
}
