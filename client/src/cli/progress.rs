//! The live line `tally sql` shows on a terminal while a job runs: stages done of all, tasks,
//! rows and bytes moved so far, elapsed time. It is redrawn in place on stderr a few times a
//! second and erased before the answer prints; when stdout or stderr is not a terminal (a
//! pipe, a file, a test), nothing is drawn at all.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tally_common::job_status::{JobStatus, StageState};
use tokio::task::JoinHandle;

use crate::output::human_bytes;

/// How often the line is redrawn (the elapsed time moves even when the job's status does not).
const REDRAW: Duration = Duration::from_millis(200);

pub(crate) struct ProgressLine {
    latest: Arc<Mutex<Option<JobStatus>>>,
    ticker: Option<JoinHandle<()>>,
}

impl ProgressLine {
    /// Starts drawing when both stdout and stderr are terminals and `quiet` is off.
    pub(crate) fn start(quiet: bool) -> Self {
        let latest = Arc::new(Mutex::new(None));
        let on_terminal = std::io::stdout().is_terminal() && std::io::stderr().is_terminal();
        let ticker = (on_terminal && !quiet).then(|| {
            let latest = latest.clone();
            let started = Instant::now();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(REDRAW);
                loop {
                    tick.tick().await;
                    let line = latest
                        .lock()
                        .expect("progress poisoned")
                        .as_ref()
                        .map(|job| describe(job, started.elapsed()));
                    if let Some(line) = line {
                        let mut err = std::io::stderr().lock();
                        // Carriage return and erase-line: the line is redrawn in place.
                        let _ = write!(err, "\r\x1b[2K{line}");
                        let _ = err.flush();
                    }
                }
            })
        });
        Self { latest, ticker }
    }

    /// Notes the job's latest status; the next redraw shows it.
    pub(crate) fn update(&self, job: &JobStatus) {
        *self.latest.lock().expect("progress poisoned") = Some(job.clone());
    }

    /// Stops drawing and erases the line.
    pub(crate) fn finish(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(ticker) = self.ticker.take() {
            ticker.abort();
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
        }
    }
}

impl Drop for ProgressLine {
    fn drop(&mut self) {
        self.stop();
    }
}

/// e.g. `job 1a2b3c4d5e6f: stage 2/3 done, tasks 7/9 (2 running), 12,000 rows and 1.2 MiB
/// shuffled, 3.4 s`.
pub(crate) fn describe(job: &JobStatus, elapsed: Duration) -> String {
    let stages_done = job
        .stages
        .iter()
        .filter(|s| s.state == StageState::Succeeded)
        .count();
    let tasks_done: u32 = job.stages.iter().map(|s| s.tasks_succeeded).sum();
    let tasks_total: u32 = job.stages.iter().map(|s| s.tasks_total).sum();
    let running: u32 = job.stages.iter().map(|s| s.tasks_running).sum();
    let rows: u64 = job.stages.iter().map(|s| s.shuffle_rows).sum();
    let bytes: u64 = job.stages.iter().map(|s| s.shuffle_bytes).sum();
    format!(
        "job {}: {stages_done}/{} stages done, tasks {tasks_done}/{tasks_total} ({running} running), \
         {rows} rows and {} shuffled, {:.1} s",
        job.job_id,
        job.stages.len(),
        human_bytes(bytes),
        elapsed.as_secs_f64()
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, UNIX_EPOCH};

    use arrow::datatypes::Schema;
    use tally_common::compression::WireCompression;
    use tally_common::ids::{JobId, StageId};
    use tally_common::job_status::{JobState, StageStatus};

    use super::*;

    fn stage(id: u32, state: StageState, done: u32, running: u32) -> StageStatus {
        StageStatus {
            stage_id: StageId(id),
            state,
            output: "gather".to_string(),
            input_stages: vec![],
            tasks_total: 4,
            tasks_running: running,
            tasks_succeeded: done,
            output_rows: 0,
            output_bytes: 0,
            shuffle_rows: 100 * u64::from(done),
            shuffle_bytes: 2048 * u64::from(done),
            shuffle_uncompressed_bytes: 0,
            elapsed: Duration::ZERO,
            rules: vec![],
            spilled_bytes: 0,
            malformed_records: 0,
            plan: String::new(),
            tasks: vec![],
        }
    }

    #[test]
    fn the_line_counts_stages_tasks_rows_and_bytes_so_far() {
        let job = JobStatus {
            job_id: JobId::from("abc123"),
            sql: String::new(),
            state: JobState::Running,
            failure: None,
            stages: vec![
                stage(1, StageState::Succeeded, 4, 0),
                stage(2, StageState::Running, 1, 3),
                stage(3, StageState::Pending, 0, 0),
            ],
            results: vec![],
            result_compression: WireCompression::None,
            result_schema: Arc::new(Schema::empty()),
            result_rows: 0,
            result_bytes: 0,
            submitted_at: UNIX_EPOCH,
            elapsed: Duration::ZERO,
            inline_result: vec![],
            naive: None,
        };
        assert_eq!(
            describe(&job, Duration::from_millis(3400)),
            "job abc123: 1/3 stages done, tasks 5/12 (3 running), 500 rows and 10.0 KiB (10240 B) shuffled, 3.4 s"
        );
    }

    #[tokio::test]
    async fn nothing_is_drawn_off_a_terminal() {
        // Tests run with their output captured: not a terminal.
        let line = ProgressLine::start(false);
        assert!(line.ticker.is_none());
        line.finish();
    }
}
