//! A real Kafka-protocol broker per test: tansu (crates.io's `tansu`, a Kafka-compatible
//! broker written in Rust, installed by `scripts/install-deps tansu` under
//! `$HOME/.cache/tansu-<version>`, or `TALLY_TANSU` naming the binary) on a free loopback
//! port with in-memory storage. Topics are made and records produced with rskafka, the
//! client Tally reads with. The broker stops when the `Tansu` is dropped.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rskafka::client::partition::{Compression, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder};
use rskafka::record::Record;

use crate::process::free_port;

/// The tansu release `scripts/install-deps tansu` installs.
pub const TANSU_VERSION: &str = "0.6.0";

pub struct Tansu {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub brokers: String,
}

fn binary() -> PathBuf {
    match std::env::var_os("TALLY_TANSU") {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(std::env::var_os("HOME").expect("HOME is set"))
            .join(format!(".cache/tansu-{TANSU_VERSION}/bin/tansu")),
    }
}

impl Tansu {
    pub fn start() -> Self {
        let binary = binary();
        assert!(
            binary.exists(),
            "{} is missing: run `scripts/install-deps tansu` (scripts/test does)",
            binary.display()
        );
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(&binary)
            .args(["broker", "--storage-engine", "memory://tansu/"])
            .args(["--listener-url", &url, "--advertised-listener-url", &url])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", binary.display()));
        let brokers = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(&brokers).is_err() {
            assert!(
                Instant::now() < deadline,
                "tansu did not start on {brokers}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, brokers }
    }

    pub async fn client(&self) -> Client {
        ClientBuilder::new(vec![self.brokers.clone()])
            .build()
            .await
            .expect("connect to tansu")
    }

    pub async fn create_topic(&self, topic: &str, partitions: i32) {
        self.client()
            .await
            .controller_client()
            .unwrap()
            .create_topic(topic, partitions, 1, 5_000)
            .await
            .unwrap_or_else(|e| panic!("create topic {topic}: {e}"));
    }

    /// Produces `values` (with their keys) to one partition, in one batch; returns the
    /// offsets the broker gave them.
    pub async fn produce(
        &self,
        topic: &str,
        partition: i32,
        values: &[(Option<&str>, &str)],
    ) -> Vec<i64> {
        let client = self.client().await;
        let partition_client = client
            .partition_client(topic, partition, UnknownTopicHandling::Retry)
            .await
            .unwrap();
        let records = values
            .iter()
            .map(|(key, value)| Record {
                key: key.map(|k| k.as_bytes().to_vec()),
                value: Some(value.as_bytes().to_vec()),
                headers: Default::default(),
                timestamp: chrono::Utc::now(),
            })
            .collect();
        partition_client
            .produce(records, Compression::NoCompression)
            .await
            .unwrap_or_else(|e| panic!("produce to {topic}/{partition}: {e}"))
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
