//! Child processes for multi-process tests: `tally` servers and etcd.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::tally_binary;

/// A child process that is killed if the test ends early.
pub struct Process {
    pub name: String,
    child: Child,
    /// Kept open: a server that prints after its first line must not hit a closed pipe.
    stdout: BufReader<ChildStdout>,
}

impl Process {
    /// Starts `tally args...` and waits for its first stdout line (its "listening" line).
    pub fn start(name: &str, args: &[&str]) -> (Self, String) {
        Self::start_with_env(name, args, &[])
    }

    /// As `start`, with `env` set for the process.
    pub fn start_with_env(name: &str, args: &[&str], env: &[(&str, &str)]) -> (Self, String) {
        Self::spawn(name, args, env, Stdio::null())
    }

    /// As `start_with_env`, with the process's log (stderr) written to `log`.
    pub fn start_logged(
        name: &str,
        args: &[&str],
        env: &[(&str, &str)],
        log: &Path,
    ) -> (Self, String) {
        let file = std::fs::File::create(log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
        Self::spawn(name, args, env, Stdio::from(file))
    }

    fn spawn(name: &str, args: &[&str], env: &[(&str, &str)], stderr: Stdio) -> (Self, String) {
        let mut child = Command::new(tally_binary())
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert!(line.contains("listening"), "{name} did not start: {line:?}");
        let process = Process {
            name: name.to_string(),
            child,
            stdout,
        };
        (process, line.trim().to_string())
    }

    /// The `host:port` a "... listening on HOST:PORT" line names.
    pub fn endpoint_of(line: &str) -> String {
        line.rsplit(' ').next().unwrap_or_default().to_string()
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Reads stdout until a line contains `text` (blocking; the process must print it).
    pub fn wait_for_line(&mut self, text: &str) {
        let mut line = String::new();
        loop {
            line.clear();
            let read = self.stdout.read_line(&mut line).unwrap();
            assert!(read > 0, "{} ended before printing {text:?}", self.name);
            if line.contains(text) {
                return;
            }
        }
    }

    /// Kills the process as a crash would (SIGKILL): no chance to say goodbye.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops the process the way an operator would (SIGTERM) and checks it exits cleanly.
    pub fn stop(mut self) {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "{} exited with {status}", self.name);
                return;
            }
            assert!(Instant::now() < deadline, "{} did not stop", self.name);
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `count` `tally worker` processes that find their cluster by `args` (e.g.
/// `["--coordinator", ADDR]`), each spooling in its own folder under `spool`; returns each
/// with its worker id.
pub fn start_workers(count: usize, args: &[&str], spool: &Path) -> Vec<(String, Process)> {
    (0..count)
        .map(|i| {
            let dir = spool.join(format!("w{i}"));
            let mut worker_args = vec!["worker", "--spool-dir", dir.to_str().unwrap()];
            worker_args.extend_from_slice(args);
            let (worker, line) = Process::start(&format!("worker {i}"), &worker_args);
            // "tally worker <id> listening on <endpoint>"
            let id = line.split_whitespace().nth(2).unwrap().to_string();
            (id, worker)
        })
        .collect()
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
