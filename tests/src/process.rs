//! `tally` processes started by a test: killed if the test ends early, checked for being
//! alive after what the test threw at them.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};

use crate::harness::tally_binary;

pub struct TallyProcess {
    pub name: String,
    child: Child,
}

impl TallyProcess {
    /// Starts `tally args...` with `env` set, and waits for its "listening" line.
    pub fn start(name: &str, args: &[&str], env: &[(&str, &str)]) -> (Self, String) {
        let mut child = Command::new(tally_binary())
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.contains("listening"), "{name} did not start: {line:?}");
        let process = Self {
            name: name.to_string(),
            child,
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
}

impl Drop for TallyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
