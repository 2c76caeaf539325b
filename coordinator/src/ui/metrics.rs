//! The coordinator's Prometheus metrics, made from its job table and worker registry when
//! scraped. The job table holds every job since the cluster started (restored from etcd by a
//! new leader), so its sums are counters: `tally_shuffle_bytes_total` is exactly the sum of
//! the jobs' shuffle bytes that `tally jobs` and `--metrics-json` show.

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntGaugeVec, Opts, Registry, TextEncoder,
};
use tally_common::job_status::{JobState, JobStatus, StageState, TaskState};

use crate::jobs::WorkerView;

/// Job durations from 10 ms to an hour.
const JOB_BUCKETS: [f64; 13] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 30.0, 120.0, 600.0, 3600.0,
];

const JOB_STATES: [JobState; 5] = [
    JobState::Queued,
    JobState::Running,
    JobState::Succeeded,
    JobState::Failed,
    JobState::Cancelled,
];

fn counter(registry: &Registry, name: &str, help: &str, value: u64) {
    let counter = IntCounter::new(name, help).expect("a valid metric");
    counter.inc_by(value);
    registry
        .register(Box::new(counter))
        .expect("registered once");
}

fn histogram(registry: &Registry, name: &str, help: &str, seconds: impl Iterator<Item = f64>) {
    let histogram =
        Histogram::with_opts(HistogramOpts::new(name, help).buckets(JOB_BUCKETS.to_vec()))
            .expect("a valid metric");
    for value in seconds {
        histogram.observe(value);
    }
    registry
        .register(Box::new(histogram))
        .expect("registered once");
}

/// The text exposition of the cluster's metrics.
pub(crate) fn render(jobs: &[JobStatus], workers: &[WorkerView]) -> String {
    let registry = Registry::new();
    let by_state = IntGaugeVec::new(
        Opts::new("tally_jobs", "Jobs the coordinator knows, by state."),
        &["state"],
    )
    .expect("a valid metric");
    for state in JOB_STATES {
        let count = jobs.iter().filter(|j| j.state == state).count();
        by_state
            .with_label_values(&[state.as_str().to_ascii_lowercase().as_str()])
            .set(count as i64);
    }
    registry
        .register(Box::new(by_state))
        .expect("registered once");

    let stages = || jobs.iter().flat_map(|j| &j.stages);
    let tasks = || stages().flat_map(|s| &s.tasks);
    histogram(
        &registry,
        "tally_job_duration_seconds",
        "How long finished jobs took, from submission to their end.",
        jobs.iter()
            .filter(|j| j.is_finished() && !j.stages.is_empty())
            .map(|j| j.elapsed.as_secs_f64()),
    );
    histogram(
        &registry,
        "tally_stage_duration_seconds",
        "How long finished stages took, from their first task's start to their last report.",
        stages()
            .filter(|s| s.state == StageState::Succeeded)
            .map(|s| s.elapsed.as_secs_f64()),
    );
    counter(
        &registry,
        "tally_shuffle_bytes_total",
        "Bytes sent between workers between stages, as sent on the wire (after compression).",
        stages().map(|s| s.shuffle_bytes).sum(),
    );
    counter(
        &registry,
        "tally_shuffle_uncompressed_bytes_total",
        "Arrow buffer bytes of the shuffled batches before compression.",
        stages().map(|s| s.shuffle_uncompressed_bytes).sum(),
    );
    counter(
        &registry,
        "tally_shuffle_rows_total",
        "Rows sent between workers between stages.",
        stages().map(|s| s.shuffle_rows).sum(),
    );
    counter(
        &registry,
        "tally_spilled_bytes_total",
        "Bytes operators spilled to disk for want of memory.",
        stages().map(|s| s.spilled_bytes).sum(),
    );
    counter(
        &registry,
        "tally_result_bytes_total",
        "Bytes of answers spooled for clients to fetch.",
        jobs.iter().map(|j| j.result_bytes).sum(),
    );
    counter(
        &registry,
        "tally_task_retries_total",
        "Task attempts beyond each task's first (failures and lost workers).",
        tasks().map(|t| u64::from(t.attempt)).sum(),
    );
    let tasks_by_state = IntGaugeVec::new(
        Opts::new(
            "tally_tasks",
            "Tasks of running jobs, by state (pending ones wait for their inputs or a worker).",
        ),
        &["state"],
    )
    .expect("a valid metric");
    for (state, name) in [
        (TaskState::Pending, "pending"),
        (TaskState::Running, "running"),
    ] {
        let count = jobs
            .iter()
            .filter(|j| !j.is_finished())
            .flat_map(|j| &j.stages)
            .flat_map(|s| &s.tasks)
            .filter(|t| t.state == state)
            .count();
        tasks_by_state.with_label_values(&[name]).set(count as i64);
    }
    registry
        .register(Box::new(tasks_by_state))
        .expect("registered once");
    let worker_gauge = IntGaugeVec::new(
        Opts::new(
            "tally_workers",
            "Workers the coordinator knows, alive or dead.",
        ),
        &["state"],
    )
    .expect("a valid metric");
    let alive = workers.iter().filter(|w| w.alive).count();
    worker_gauge.with_label_values(&["alive"]).set(alive as i64);
    worker_gauge
        .with_label_values(&["dead"])
        .set((workers.len() - alive) as i64);
    registry
        .register(Box::new(worker_gauge))
        .expect("registered once");

    let mut text = Vec::new();
    TextEncoder::new()
        .encode(&registry.gather(), &mut text)
        .expect("the text encoder writes to memory");
    String::from_utf8(text).expect("the text format is UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ui::test_support::three_stage_job;

    #[test]
    fn sums_of_the_jobs_figures_become_counters_and_states_gauges() {
        let mut running = three_stage_job();
        running.state = JobState::Running;
        let text = render(&[three_stage_job(), running], &[]);
        for line in [
            "tally_jobs{state=\"succeeded\"} 1",
            "tally_jobs{state=\"running\"} 1",
            "tally_jobs{state=\"failed\"} 0",
            "tally_shuffle_bytes_total 5002000",
            "tally_shuffle_rows_total 520",
            "tally_spilled_bytes_total 60",
            "tally_result_bytes_total 154",
            // Attempts 0, 1 and 2 of each job's second tasks.
            "tally_task_retries_total 6",
            "tally_job_duration_seconds_count 1",
            "tally_stage_duration_seconds_count 6",
            "tally_workers{state=\"alive\"} 0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from\n{text}"
            );
        }
    }
}
