//! A real etcd server per test, on free loopback ports with its own data folder. The README's
//! test command installs etcd (Debian's `etcd-server`) when it is missing.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::process::free_port;

pub struct Etcd {
    child: Child,
    /// `127.0.0.1:port` for clients.
    pub endpoint: String,
    _data: tempfile::TempDir,
}

impl Etcd {
    pub fn start() -> Self {
        let data = tempfile::tempdir().expect("etcd data folder");
        let client = format!("http://127.0.0.1:{}", free_port());
        let peer = format!("http://127.0.0.1:{}", free_port());
        let child = Command::new("etcd")
            .args(["--name", "tally-test", "--data-dir"])
            .arg(data.path())
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("tally-test={peer}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "start etcd: install it with `apt-get install etcd-server` (scripts/test does)",
            );
        let endpoint = client.trim_start_matches("http://").to_string();
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(&endpoint).is_err() {
            assert!(
                Instant::now() < deadline,
                "etcd did not start on {endpoint}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            child,
            endpoint,
            _data: data,
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A cluster name no other test uses, so tests may share an etcd.
pub fn unique_cluster(test: &str) -> String {
    format!("{test}-{}-{}", std::process::id(), free_port())
}
