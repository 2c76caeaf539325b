//! Follows a writing job: START when it is submitted, COMPLETE or FAIL when it ends (a
//! cancelled job is a FAIL with its reason), with the tables its query reads as inputs and
//! the table it writes as output, its column lineage aligned to that table's columns.

use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::Schema;
use chrono::{SecondsFormat, Utc};
use datafusion::logical_expr::LogicalPlan;
use tally_common::ids::JobId;
use tally_common::job_status::JobState;
use tokio::sync::watch;

use super::LineageSender;
use super::columns::{Sources, column_lineage};
use super::events::{Dataset, RunState, WriteRun};
use super::indirect::indirect_lineage;
use crate::jobs::JobManager;
use crate::sql::catalog::Catalog;
use crate::sql::table_pins::scanned_tables;

pub(crate) struct LineageRecorder {
    sender: Arc<LineageSender>,
    namespace: String,
    /// Runs whose events are not all sent yet.
    in_flight: watch::Sender<usize>,
}

/// What a writing job writes: the table, where, with which columns.
pub(crate) struct WrittenTable {
    pub table: String,
    pub location: String,
    pub schema: Schema,
    /// What the job does, for a job name stable across runs (`insert`, `create_table`, ...).
    pub action: &'static str,
}

impl LineageRecorder {
    pub(crate) fn new(sender: LineageSender, namespace: String) -> Self {
        Self {
            sender: Arc::new(sender),
            namespace,
            in_flight: watch::Sender::new(0),
        }
    }

    /// Waits (at most `limit`) until every followed run's events are sent.
    pub(crate) async fn drain(&self, limit: Duration) {
        let mut in_flight = self.in_flight.subscribe();
        let _ = tokio::time::timeout(limit, in_flight.wait_for(|n| *n == 0)).await;
    }

    /// Sends START for job `id` writing `output` from `query` (whose output columns are
    /// named after the table's columns they fill), then its end once the job has ended.
    pub(crate) fn follow_write(
        &self,
        jobs: &Arc<JobManager>,
        catalog: &Catalog,
        id: &JobId,
        sql: &str,
        query: &LogicalPlan,
        output: WrittenTable,
    ) {
        let inputs = scanned(catalog, query);
        let lineage = aligned(query, &output.schema);
        let indirect = indirect_lineage(query);
        let run = WriteRun {
            run_id: uuid::Uuid::new_v4(),
            namespace: self.namespace.clone(),
            job_name: format!("{}.{}", output.action, output.table),
            sql: sql.to_string(),
            inputs: inputs.clone(),
            output: Dataset {
                table: output.table,
                location: output.location,
                schema: output.schema,
            },
            lineage,
            indirect,
            sources: inputs,
        };
        let (sender, jobs, id) = (self.sender.clone(), jobs.clone(), id.clone());
        let in_flight = self.in_flight.clone();
        in_flight.send_modify(|n| *n += 1);
        tokio::spawn(async move {
            sender.send(&run.event(RunState::Start, &now(), None)).await;
            jobs.finished(&id).await;
            let status = jobs.status(&id);
            let (state, error) = match &status {
                Some(status) if status.state == JobState::Succeeded => (RunState::Complete, None),
                Some(status) => (
                    RunState::Fail,
                    Some(status.failure.as_ref().map_or_else(
                        || format!("job {id} ended {:?}", status.state),
                        |f| f.message.clone(),
                    )),
                ),
                None => (RunState::Fail, Some(format!("job {id} is gone"))),
            };
            sender
                .send(&run.event(state, &now(), error.as_deref()))
                .await;
            in_flight.send_modify(|n| *n -= 1);
        });
    }
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The tables `plan` scans, as datasets, in name order.
fn scanned(catalog: &Catalog, plan: &LogicalPlan) -> Vec<Dataset> {
    scanned_tables(plan)
        .into_iter()
        .map(|(table, schema)| Dataset {
            location: catalog.entry(&table).map_or_else(
                || table.clone(),
                |entry| entry.path.to_string_lossy().to_string(),
            ),
            table,
            schema: schema.as_ref().clone(),
        })
        .collect()
}

/// The lineage of each column of `schema`: that of the query column of the same name
/// (none for a column the query does not fill, such as a static partition value).
fn aligned(query: &LogicalPlan, schema: &Schema) -> Vec<Sources> {
    let names: Vec<String> = query
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let lineage = column_lineage(query);
    schema
        .fields()
        .iter()
        .map(|field| {
            names
                .iter()
                .position(|n| n == field.name())
                .map(|i| lineage[i].clone())
                .unwrap_or_default()
        })
        .collect()
}
