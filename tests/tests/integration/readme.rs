//! The README's commands as written: every `tally ...` line in its `sh` blocks is one the
//! command line accepts (subcommand, flags and values), and the one-shot queries on an
//! embedded cluster run and answer. Long-running servers and full-scale data generation are
//! only parsed here.

use std::path::Path;
use std::process::Command;

use clap::Parser;
use tally_client::cli::Cli;
use tally_tests::harness::{tally_binary, tpch_dir};

fn readme() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The arguments (after `tally`) of every `tally` command in the README's `sh` blocks, with
/// continuation lines joined, comments and leading `VAR=...` assignments dropped, optional
/// `[...]` parts included and `a|b|c` subcommands spelled out one by one.
fn readme_commands(text: &str) -> Vec<Vec<String>> {
    let mut commands = Vec::new();
    let mut in_sh = false;
    let mut line = String::new();
    for raw in text.lines() {
        if raw.trim_start().starts_with("```") {
            in_sh = !in_sh && raw.trim() == "```sh";
            continue;
        }
        if !in_sh {
            continue;
        }
        match raw.trim_end().strip_suffix('\\') {
            Some(part) => {
                line.push_str(part);
                continue;
            }
            None => line.push_str(raw),
        }
        let words = split_words(&line);
        line.clear();
        let Some(start) = words.iter().position(|w| !is_assignment(w)) else {
            continue;
        };
        if words[start] != "tally" {
            continue;
        }
        let args: Vec<String> = words[start + 1..]
            .iter()
            .map(|w| w.trim_start_matches('[').trim_end_matches(']').to_string())
            .filter(|w| !w.is_empty())
            .collect();
        let Some(subcommands) = args.first() else {
            continue;
        };
        for subcommand in subcommands.split('|') {
            let mut one = vec![subcommand.to_string()];
            one.extend_from_slice(&args[1..]);
            commands.push(one);
        }
    }
    commands
}

fn is_assignment(word: &str) -> bool {
    word.split_once('=').is_some_and(|(name, _)| {
        !name.is_empty() && name.chars().all(|c| c.is_ascii_uppercase() || c == '_')
    })
}

/// Shell-like words: quotes group, `$(...)` stays one word, an unquoted `#` after a space
/// starts a comment.
fn split_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quote: Option<char> = None;
    let mut depth = 0;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '"' | '\'') => quote = Some(c),
            (None, '$') if chars.peek() == Some(&'(') => {
                depth += 1;
                word.push(c);
            }
            (None, ')') if depth > 0 => {
                depth -= 1;
                word.push(c);
            }
            (None, '#') if word.is_empty() && depth == 0 => break,
            (None, c) if c.is_whitespace() && depth == 0 => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            (None, c) => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

#[test]
fn the_readme_names_only_commands_and_flags_that_exist() {
    let commands = readme_commands(&readme());
    // A floor that catches an extraction gone wrong (the README names 18 today).
    assert!(commands.len() >= 15, "found only {commands:?}");
    for args in &commands {
        let argv = std::iter::once("tally".to_string()).chain(args.iter().cloned());
        if let Err(error) = Cli::try_parse_from(argv) {
            panic!("README: `tally {}` is refused:\n{error}", args.join(" "));
        }
    }
}

#[test]
fn the_readmes_embedded_queries_run_as_written() {
    // The README's data folder, at a small scale.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    std::os::unix::fs::symlink(tpch_dir(), dir.path().join("data/tpch-sf1")).unwrap();

    let embedded: Vec<_> = readme_commands(&readme())
        .into_iter()
        .filter(|args| args[0] == "sql" && !args.iter().any(|a| a == "--coordinator"))
        .collect();
    assert!(
        !embedded.is_empty(),
        "no embedded `tally sql` in the README"
    );
    for args in embedded {
        let output = Command::new(tally_binary())
            .args(&args)
            .current_dir(dir.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "tally {}: {stderr}",
            args.join(" ")
        );
        assert!(
            !output.stdout.is_empty(),
            "tally {}: no answer",
            args.join(" ")
        );
    }
}

#[test]
fn commands_are_read_like_a_shell_would() {
    let text = "```sh\n\
        # a comment\n\
        TALLY_TOKEN=$(cat /etc/t) tally worker --coordinator h:1 --bind 0.0.0.0:0 \\\n  \
          --advertise-host HOST   # trailing comment\n\
        tally tables|jobs --coordinator h:1 [--token-file F]\n\
        bench/compare --help\n\
        ```\n\
        tally ignored --outside-blocks\n";
    assert_eq!(
        readme_commands(text),
        vec![
            vec![
                "worker",
                "--coordinator",
                "h:1",
                "--bind",
                "0.0.0.0:0",
                "--advertise-host",
                "HOST"
            ],
            vec!["tables", "--coordinator", "h:1", "--token-file", "F"],
            vec!["jobs", "--coordinator", "h:1", "--token-file", "F"],
        ]
    );
}
