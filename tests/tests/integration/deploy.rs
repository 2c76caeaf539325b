//! `deploy/local-cluster.sh` starts etcd, a coordinator and workers as processes, they answer
//! a query, and `stop` ends every one of them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tally_tests::harness::{tally_binary, tpch_dir};
use tally_tests::process::free_port;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/local-cluster.sh")
}

fn run(command: &mut Command) -> Output {
    let output = command.output().expect("run command");
    assert!(
        output.status.success(),
        "{command:?} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

#[test]
fn local_cluster_script_starts_a_cluster_that_answers_and_stops_it() {
    let state = tempfile::tempdir().unwrap();
    let state_dir = state.path().join("cluster");
    let port = free_port();
    let cluster = |action: &str| {
        let mut command = Command::new(script());
        command
            .arg(action)
            .env("TALLY", tally_binary())
            .env("WORKERS", "2")
            .env("PORT", port.to_string())
            .env("ETCD_PORT", free_port().to_string())
            .env("STATE_DIR", &state_dir)
            .env("DATA_ROOT", tpch_dir());
        command
    };
    let started = run(&mut cluster("start"));
    let banner = String::from_utf8_lossy(&started.stdout);
    assert!(
        banner.contains(&format!("coordinator at 127.0.0.1:{port}")),
        "{banner}"
    );
    let pids: Vec<u32> = std::fs::read_dir(&state_dir)
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "pid"))
        .map(|e| {
            std::fs::read_to_string(e.path())
                .unwrap()
                .trim()
                .parse()
                .unwrap()
        })
        .collect();
    assert_eq!(pids.len(), 4, "etcd, a coordinator and 2 workers");
    run(&mut cluster("status"));

    let coordinator = format!("127.0.0.1:{port}");
    let nation = tpch_dir().join("nation");
    let answer = run(Command::new(tally_binary()).args([
        "sql",
        "--coordinator",
        &coordinator,
        "--format",
        "csv",
        "-e",
        &format!(
            "CREATE EXTERNAL TABLE nation STORED AS PARQUET LOCATION '{}'; \
             SELECT count(*) AS n FROM nation",
            nation.display()
        ),
    ]));
    assert!(String::from_utf8_lossy(&answer.stdout).contains("25"));
    let workers =
        run(Command::new(tally_binary()).args(["workers", "--coordinator", &coordinator]));
    assert_eq!(
        String::from_utf8_lossy(&workers.stdout)
            .matches("alive")
            .count(),
        2
    );

    let stopped = run(&mut cluster("stop"));
    assert!(String::from_utf8_lossy(&stopped.stdout).contains("stopped 4 processes"));
    for pid in pids {
        let alive = Command::new("kill")
            .args(["-0", &pid.to_string()])
            .output()
            .unwrap();
        assert!(
            !alive.status.success(),
            "process {pid} still runs after stop"
        );
    }
    assert!(!state_dir.exists());
}
