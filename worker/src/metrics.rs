//! The worker's Prometheus metrics, served at `/metrics` on its own gRPC port (HTTP/1.1 is
//! accepted beside gRPC there), behind the cluster token like its other services.
//!
//! Counters move where the work happens (a Flight stream sending a message, a task report
//! leaving for the coordinator); gauges are read when scraped.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};
use tally_common::auth::RequireToken;

/// Task durations from 10 ms to about 10 minutes.
const DURATION_BUCKETS: [f64; 12] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 30.0, 120.0, 600.0,
];

pub(crate) struct WorkerMetrics {
    registry: Registry,
    flight_bytes: IntCounter,
    flight_messages: IntCounter,
    flight_streams: IntCounter,
    tasks: IntCounterVec,
    task_seconds: Histogram,
    spilled_bytes: IntCounter,
    tasks_running: IntGauge,
    memory_reserved: IntGauge,
    memory_limit: IntGauge,
    spool_bytes: IntGauge,
}

/// What only the worker knows at scrape time (and tells the coordinator in its heartbeats).
pub(crate) struct Snapshot {
    pub tasks_running: usize,
    pub memory_reserved: usize,
    pub memory_limit: usize,
    pub spool_bytes: u64,
}

/// Reads the worker's gauges now.
pub(crate) type Gauges = Arc<dyn Fn() -> Snapshot + Send + Sync>;

impl WorkerMetrics {
    pub(crate) fn new() -> Arc<Self> {
        let registry = Registry::new();
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("a valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("registered once");
            c
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("a valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("registered once");
            g
        };
        let flight_bytes = counter(
            "tally_worker_flight_bytes_served_total",
            "Bytes of Arrow Flight messages (encoded, as sent) this worker served from its spool.",
        );
        let flight_messages = counter(
            "tally_worker_flight_messages_served_total",
            "Arrow Flight messages this worker served.",
        );
        let flight_streams = counter(
            "tally_worker_flight_streams_served_total",
            "DoGet streams this worker opened for other workers and clients.",
        );
        let spilled_bytes = counter(
            "tally_worker_spilled_bytes_total",
            "Bytes this worker's tasks spilled to disk for want of memory.",
        );
        let tasks = IntCounterVec::new(
            Opts::new(
                "tally_worker_tasks_total",
                "Tasks this worker ran, by outcome.",
            ),
            &["outcome"],
        )
        .expect("a valid metric");
        registry
            .register(Box::new(tasks.clone()))
            .expect("registered once");
        let task_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "tally_worker_task_duration_seconds",
                "How long this worker's tasks ran, from their start to their report.",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
        )
        .expect("a valid metric");
        registry
            .register(Box::new(task_seconds.clone()))
            .expect("registered once");
        let tasks_running = gauge(
            "tally_worker_tasks_running",
            "Tasks running or waiting for a slot on this worker.",
        );
        let memory_reserved = gauge(
            "tally_worker_memory_reserved_bytes",
            "Bytes the worker's operators hold in its memory pool.",
        );
        let memory_limit = gauge(
            "tally_worker_memory_limit_bytes",
            "The size of the worker's memory pool (--memory-limit-mb).",
        );
        let spool_bytes = gauge(
            "tally_worker_spool_bytes",
            "Bytes of stage output spooled on this worker's disk.",
        );
        Arc::new(Self {
            registry,
            flight_bytes,
            flight_messages,
            flight_streams,
            tasks,
            task_seconds,
            spilled_bytes,
            tasks_running,
            memory_reserved,
            memory_limit,
            spool_bytes,
        })
    }

    pub(crate) fn stream_opened(&self) {
        self.flight_streams.inc();
    }

    pub(crate) fn message_sent(&self, bytes: usize) {
        self.flight_messages.inc();
        self.flight_bytes.inc_by(bytes as u64);
    }

    pub(crate) fn task_ended(&self, succeeded: bool, elapsed: Duration, spilled_bytes: u64) {
        let outcome = if succeeded { "succeeded" } else { "failed" };
        self.tasks.with_label_values(&[outcome]).inc();
        self.task_seconds.observe(elapsed.as_secs_f64());
        self.spilled_bytes.inc_by(spilled_bytes);
    }

    /// The text exposition of every metric, the gauges set from `snapshot`.
    pub(crate) fn render(&self, snapshot: Snapshot) -> String {
        self.tasks_running.set(snapshot.tasks_running as i64);
        self.memory_reserved.set(snapshot.memory_reserved as i64);
        self.memory_limit.set(snapshot.memory_limit as i64);
        self.spool_bytes.set(snapshot.spool_bytes as i64);
        // Both outcomes are listed from the start, at zero until a task ends so.
        for outcome in ["succeeded", "failed"] {
            self.tasks.with_label_values(&[outcome]);
        }
        let mut text = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut text)
            .expect("the text encoder writes to memory");
        String::from_utf8(text).expect("the text format is UTF-8")
    }
}

/// Bytes of the files under `dir` (the spool), 0 when it does not exist.
pub(crate) fn bytes_under(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(kind) if kind.is_dir() => bytes_under(&entry.path()),
            Ok(_) => entry.metadata().map_or(0, |m| m.len()),
            Err(_) => 0,
        })
        .sum()
}

/// `GET /metrics`, checked against the cluster token; `snapshot` reads the gauges.
pub(crate) fn router<F>(metrics: Arc<WorkerMetrics>, token: RequireToken, snapshot: F) -> Router
where
    F: Fn() -> Snapshot + Clone + Send + Sync + 'static,
{
    Router::new()
        .route(
            "/metrics",
            get(
                move |State(metrics): State<Arc<WorkerMetrics>>| async move {
                    let text = metrics.render(snapshot());
                    (
                        [(
                            header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        text,
                    )
                },
            ),
        )
        .layer(axum::middleware::from_fn(
            move |request: Request, next: Next| {
                let token = token.clone();
                async move {
                    if let Some(refused) = require_token(&token, request.headers()) {
                        return refused;
                    }
                    next.run(request).await
                }
            },
        ))
        .with_state(metrics)
}

/// The answer to a call without the token or with another one; None when it may pass.
fn require_token(token: &RequireToken, headers: &HeaderMap) -> Option<Response> {
    let presented = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
    token
        .check_header(presented)
        .err()
        .map(|refusal| (StatusCode::UNAUTHORIZED, refusal.message()).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_add_up_and_gauges_read_the_snapshot() {
        let metrics = WorkerMetrics::new();
        metrics.stream_opened();
        metrics.message_sent(100);
        metrics.message_sent(23);
        metrics.task_ended(true, Duration::from_millis(30), 7);
        metrics.task_ended(false, Duration::from_secs(2), 0);
        let text = metrics.render(Snapshot {
            tasks_running: 2,
            memory_reserved: 4096,
            memory_limit: 1 << 20,
            spool_bytes: 555,
        });
        for line in [
            "tally_worker_flight_bytes_served_total 123",
            "tally_worker_flight_messages_served_total 2",
            "tally_worker_flight_streams_served_total 1",
            "tally_worker_tasks_total{outcome=\"succeeded\"} 1",
            "tally_worker_tasks_total{outcome=\"failed\"} 1",
            "tally_worker_task_duration_seconds_count 2",
            "tally_worker_spilled_bytes_total 7",
            "tally_worker_tasks_running 2",
            "tally_worker_memory_reserved_bytes 4096",
            "tally_worker_spool_bytes 555",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from\n{text}"
            );
        }
    }

    #[test]
    fn spool_bytes_count_files_in_nested_folders() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("job/1/0")).unwrap();
        std::fs::write(dir.path().join("job/1/0/0.arrow"), [0u8; 100]).unwrap();
        std::fs::write(dir.path().join("top"), [0u8; 5]).unwrap();
        assert_eq!(bytes_under(dir.path()), 105);
        assert_eq!(bytes_under(&dir.path().join("absent")), 0);
    }
}
