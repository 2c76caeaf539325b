//! A real S3-compatible server per test: moto_server (PyPI's `moto[server]`, installed by
//! `scripts/install-deps moto` into `$HOME/.cache/tally-venv`, or `TALLY_VENV`) on a free
//! loopback port. `moto_setup.py` creates an IAM user with a key, the buckets and their
//! objects, then turns authentication on, so requests signed with another key are refused
//! as AWS would refuse them. The server stops when the `Moto` is dropped.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::process::free_port;

pub struct Moto {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    pub access_key_id: String,
    pub secret_access_key: String,
}

/// The region every test uses; moto accepts any.
pub const REGION: &str = "us-east-1";

fn venv() -> PathBuf {
    match std::env::var_os("TALLY_VENV") {
        Some(dir) => PathBuf::from(dir),
        None => {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/tally-venv")
        }
    }
}

impl Moto {
    /// Starts moto_server with `buckets`, and uploads each `(s3://bucket/prefix, local dir)`
    /// of `uploads` (every file under the folder, by its relative path).
    pub fn start(buckets: &[&str], uploads: &[(&str, &Path)]) -> Self {
        let venv = venv();
        let server = venv.join("bin/moto_server");
        assert!(
            server.exists(),
            "{} is missing: run `scripts/install-deps moto` (scripts/test does)",
            server.display()
        );
        let port = free_port();
        let child = Command::new(&server)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", server.display()));
        let address = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(&address).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto_server did not start on {address}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let endpoint = format!("http://{address}");
        // From here on the server stops with `moto`, whatever happens.
        let mut moto = Self {
            child,
            endpoint,
            access_key_id: String::new(),
            secret_access_key: String::new(),
        };
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/moto_setup.py");
        let mut setup = Command::new(venv.join("bin/python"));
        setup.arg(script).arg(&moto.endpoint);
        for bucket in buckets {
            setup.args(["--bucket", bucket]);
        }
        for (target, local) in uploads {
            setup
                .arg("--upload")
                .arg(format!("{target}={}", local.display()));
        }
        let output = setup.output().expect("run moto_setup.py");
        assert!(
            output.status.success(),
            "moto_setup.py failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let key: serde_json::Value =
            serde_json::from_slice(&output.stdout).expect("moto_setup.py prints the key as JSON");
        moto.access_key_id = key["access_key_id"].as_str().unwrap().to_string();
        moto.secret_access_key = key["secret_access_key"].as_str().unwrap().to_string();
        moto
    }

    /// `OPTIONS (...)` for CREATE EXTERNAL TABLE with this server and `secret`.
    pub fn table_options(&self, secret: &str) -> String {
        format!(
            "OPTIONS ('aws.endpoint' '{}', 'aws.region' '{REGION}', 'aws.allow_http' 'true', \
             'aws.access_key_id' '{}', 'aws.secret_access_key' '{secret}')",
            self.endpoint, self.access_key_id
        )
    }

    /// The `AWS_*` environment that points a `tally` process at this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_REGION", REGION.to_string()),
            ("AWS_ALLOW_HTTP", "true".to_string()),
            ("AWS_ACCESS_KEY_ID", self.access_key_id.clone()),
            ("AWS_SECRET_ACCESS_KEY", self.secret_access_key.clone()),
        ]
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
