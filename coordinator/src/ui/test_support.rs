//! Job statuses for the UI's unit tests.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use arrow::datatypes::Schema;
use tally_common::compression::WireCompression;
use tally_common::ids::{JobId, StageId, WorkerId};
use tally_common::job_status::{
    JobState, JobStatus, StageState, StageStatus, TaskState, TaskStatus,
};

fn stage(id: u32, inputs: &[u32], shuffle_bytes: u64, shuffle_rows: u64) -> StageStatus {
    StageStatus {
        stage_id: StageId(id),
        state: StageState::Succeeded,
        output: if inputs.is_empty() {
            "hash([k], 4)".to_string()
        } else {
            "gather".to_string()
        },
        input_stages: inputs.iter().map(|s| StageId(*s)).collect(),
        tasks_total: 2,
        tasks_running: 0,
        tasks_succeeded: 2,
        output_rows: shuffle_rows,
        output_bytes: shuffle_bytes,
        shuffle_rows,
        shuffle_bytes,
        shuffle_uncompressed_bytes: shuffle_bytes * 2,
        elapsed: Duration::from_millis(40 * id as u64),
        rules: vec!["partial_aggregation".to_string()],
        spilled_bytes: 5 * id as u64,
        malformed_records: 0,
        plan: "ShuffleWriterExec <x>".to_string(),
        tasks: vec![
            TaskStatus {
                partition: 0,
                attempt: 0,
                worker_id: Some(WorkerId::from("w-1")),
                state: TaskState::Succeeded,
                elapsed: Duration::from_millis(1200 + id as u64),
                spilled_bytes: 5 * id as u64,
                output_rows: shuffle_rows,
                output_bytes: shuffle_bytes,
            },
            TaskStatus {
                partition: 1,
                attempt: id - 1,
                worker_id: Some(WorkerId::from("w-2")),
                state: TaskState::Succeeded,
                elapsed: Duration::from_millis(30),
                spilled_bytes: 0,
                output_rows: 0,
                output_bytes: 0,
            },
        ],
    }
}

/// Two scans feeding a join, whose answer the client fetched: 3 stages.
pub(crate) fn three_stage_job() -> JobStatus {
    JobStatus {
        job_id: JobId::from("a1b2c3d4"),
        sql: "SELECT <b> FROM t".to_string(),
        state: JobState::Succeeded,
        failure: None,
        stages: vec![
            stage(1, &[], 1000, 10),
            stage(2, &[], 2_500_000, 250),
            stage(3, &[1, 2], 0, 0),
        ],
        results: vec![],
        result_compression: WireCompression::None,
        result_schema: Arc::new(Schema::empty()),
        result_rows: 3,
        result_bytes: 77,
        submitted_at: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        elapsed: Duration::from_millis(1500),
        inline_result: vec![],
        naive: None,
    }
}
