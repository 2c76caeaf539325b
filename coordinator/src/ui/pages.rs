//! The pages, as HTML made from the coordinator's own types. Every page has a live part
//! (`<main>`) that the script fetches again while something on it is running.

use std::fmt::Write;

use tally_common::job_status::{JobStatus, StageState, StageStatus, TaskState};

use super::dag;
use super::format::{duration_ms, escape, grouped, human_bytes, stage_state};
use crate::jobs::WorkerView;
use crate::sql::catalog::TableView;

/// A page's live part, and whether it is worth refreshing.
pub(crate) struct Content {
    pub html: String,
    pub live: bool,
}

pub(crate) fn layout(title: &str, content: &Content) -> String {
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <title>Tally · {title}</title><link rel=\"stylesheet\" href=\"/assets/ui.css\">\
         <script src=\"/assets/ui.js\" defer></script></head><body>\
         <nav><span class=\"brand\">Tally</span><a href=\"/\">Jobs</a><a href=\"/workers\">Workers</a>\
         <a href=\"/tables\">Tables</a><a href=\"/metrics\">Metrics</a></nav>\
         <main id=\"live\" data-live=\"{live}\">{html}</main></body></html>",
        title = escape(title),
        live = if content.live { 1 } else { 0 },
        html = content.html
    )
}

fn job_shuffle_bytes(job: &JobStatus) -> u64 {
    job.stages.iter().map(|s| s.shuffle_bytes).sum()
}

fn state_badge(state: &str) -> String {
    format!(
        "<span class=\"state {}\">{state}</span>",
        state.to_ascii_lowercase()
    )
}

fn task_state(state: TaskState) -> &'static str {
    match state {
        TaskState::Pending => "PENDING",
        TaskState::Running => "RUNNING",
        TaskState::Succeeded => "SUCCEEDED",
        TaskState::Failed => "FAILED",
        TaskState::Cancelled => "CANCELLED",
    }
}

fn cancel_button(job: &JobStatus) -> String {
    if job.is_finished() {
        return String::new();
    }
    format!(
        "<form method=\"post\" action=\"/jobs/{id}/cancel\" class=\"cancel\">\
         <button type=\"submit\" id=\"cancel-{id}\">Cancel</button></form>",
        id = escape(job.job_id.as_str())
    )
}

/// Stages done of all, tasks done of all: the progress of a job.
fn progress(job: &JobStatus) -> String {
    let stages_done = job
        .stages
        .iter()
        .filter(|s| s.state == StageState::Succeeded)
        .count();
    let tasks_total: u32 = job.stages.iter().map(|s| s.tasks_total).sum();
    let tasks_done: u32 = job.stages.iter().map(|s| s.tasks_succeeded).sum();
    let running: u32 = job.stages.iter().map(|s| s.tasks_running).sum();
    if job.stages.is_empty() {
        return String::new();
    }
    format!(
        "<progress max=\"{}\" value=\"{tasks_done}\"></progress> \
         <span class=\"progress\">{stages_done}/{} stages, {tasks_done}/{tasks_total} tasks{}</span>",
        tasks_total.max(1),
        job.stages.len(),
        if running > 0 && !job.is_finished() {
            format!(", {running} running")
        } else {
            String::new()
        }
    )
}

/// Every job, newest first.
pub(crate) fn jobs(mut jobs: Vec<JobStatus>) -> Content {
    jobs.sort_by_key(|job| std::cmp::Reverse(job.submitted_at));
    let live = jobs.iter().any(|j| !j.is_finished());
    let mut html = String::from(
        "<h1>Jobs</h1><table class=\"jobs\"><thead><tr><th>job</th><th>state</th><th>SQL</th>\
         <th>duration</th><th>progress</th><th>rows</th><th>shuffled</th><th></th></tr></thead><tbody>",
    );
    if jobs.is_empty() {
        html.push_str("<tr><td colspan=\"8\">No jobs yet.</td></tr>");
    }
    for job in &jobs {
        let sql: String = job.sql.split_whitespace().collect::<Vec<_>>().join(" ");
        let short: String = sql.chars().take(140).collect();
        let _ = write!(
            html,
            "<tr id=\"job-{id}\" data-state=\"{state}\"><td><a href=\"/jobs/{id}\">{id}</a></td>\
             <td>{badge}</td><td class=\"sql\" title=\"{sql}\">{short}{more}</td><td>{elapsed}</td>\
             <td>{progress}</td><td class=\"num\">{rows}</td><td class=\"num\" data-bytes=\"{bytes}\">{human}</td><td>{cancel}</td></tr>",
            id = escape(job.job_id.as_str()),
            state = job.state.as_str(),
            badge = state_badge(job.state.as_str()),
            sql = escape(&sql),
            short = escape(&short),
            more = if sql.chars().count() > 140 { "…" } else { "" },
            elapsed = duration_ms(job.elapsed.as_millis()),
            progress = progress(job),
            rows = grouped(job.result_rows),
            bytes = job_shuffle_bytes(job),
            human = human_bytes(job_shuffle_bytes(job)),
            cancel = cancel_button(job),
        );
    }
    html.push_str("</tbody></table>");
    Content { html, live }
}

/// One job: its figures, its stage graph, and each stage with its tasks and plan.
pub(crate) fn job(job: &JobStatus) -> Content {
    let mut html = String::new();
    let id = escape(job.job_id.as_str());
    let _ = write!(
        html,
        "<h1>Job <code>{id}</code> {badge}</h1>{cancel}<pre class=\"sql\">{sql}</pre>",
        badge = state_badge(job.state.as_str()),
        cancel = cancel_button(job),
        sql = escape(job.sql.trim()),
    );
    if let Some(failure) = &job.failure {
        let _ = write!(
            html,
            "<p class=\"error\">{:?}: {}</p>",
            failure.code,
            escape(&failure.message)
        );
    }
    let shuffled = job_shuffle_bytes(job);
    let spilled: u64 = job.stages.iter().map(|s| s.spilled_bytes).sum();
    let _ = write!(
        html,
        "<dl class=\"figures\"><dt>duration</dt><dd>{elapsed}</dd><dt>progress</dt><dd>{progress}</dd>\
         <dt>shuffled</dt><dd id=\"shuffle-bytes\" data-bytes=\"{shuffled}\">{sb} B ({sh}), {rows} rows</dd>\
         <dt>answer</dt><dd>{rr} rows, {rb}</dd><dt>spilled</dt><dd>{spilled}</dd></dl>",
        elapsed = duration_ms(job.elapsed.as_millis()),
        progress = progress(job),
        sb = grouped(shuffled),
        sh = human_bytes(shuffled),
        rows = grouped(job.stages.iter().map(|s| s.shuffle_rows).sum()),
        rr = grouped(job.result_rows),
        rb = human_bytes(job.result_bytes),
        spilled = human_bytes(spilled),
    );
    let svg = dag::render_svg(job);
    if !svg.is_empty() {
        let _ = write!(
            html,
            "<h2>Stages</h2><p class=\"hint\">Each arrow carries what its stage sent between \
             workers (bytes on the wire, after compression) to the stage that reads it.</p>\
             <div class=\"dag\" id=\"dag\">{svg}</div>"
        );
    }
    for stage in &job.stages {
        html.push_str(&stage_section(stage));
    }
    Content {
        html,
        live: !job.is_finished(),
    }
}

fn stage_section(stage: &StageStatus) -> String {
    let inputs = if stage.input_stages.is_empty() {
        "reads tables".to_string()
    } else {
        let ids: Vec<String> = stage.input_stages.iter().map(|s| s.to_string()).collect();
        format!("reads stage {}", ids.join(", "))
    };
    let mut html = String::new();
    let _ = write!(
        html,
        "<section class=\"stage\" id=\"stage-{id}\"><h3>Stage {id} {badge}</h3>\
         <p>{inputs}; output {output}; {done}/{total} tasks; {elapsed}</p>\
         <table class=\"figures\"><tr><th>rows out</th><th>shuffled</th><th>uncompressed</th>\
         <th>rows shuffled</th><th>spilled</th></tr><tr><td class=\"num\">{out_rows}</td>\
         <td class=\"num\" data-bytes=\"{bytes}\">{bytes_g} B</td><td class=\"num\">{unc}</td>\
         <td class=\"num\">{rows}</td><td class=\"num\">{spilled}</td></tr></table>",
        id = stage.stage_id,
        badge = state_badge(stage_state(stage.state)),
        output = escape(&stage.output),
        done = stage.tasks_succeeded,
        total = stage.tasks_total,
        elapsed = duration_ms(stage.elapsed.as_millis()),
        out_rows = grouped(stage.output_rows),
        bytes = stage.shuffle_bytes,
        bytes_g = grouped(stage.shuffle_bytes),
        unc = human_bytes(stage.shuffle_uncompressed_bytes),
        rows = grouped(stage.shuffle_rows),
        spilled = human_bytes(stage.spilled_bytes),
    );
    if !stage.rules.is_empty() {
        let _ = write!(
            html,
            "<p class=\"rules\">rules: {}</p>",
            escape(&stage.rules.join(", "))
        );
    }
    html.push_str(
        "<details><summary>tasks</summary><table class=\"tasks\"><thead><tr><th>partition</th>\
         <th>attempt</th><th>worker</th><th>state</th></tr></thead><tbody>",
    );
    for task in &stage.tasks {
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            task.partition,
            task.attempt,
            task.worker_id
                .as_ref()
                .map_or("-".to_string(), |w| escape(w.as_str())),
            state_badge(task_state(task.state)),
        );
    }
    let _ = write!(
        html,
        "</tbody></table></details><details><summary>plan</summary><pre>{}</pre></details></section>",
        escape(&stage.plan)
    );
    html
}

/// The workers, with the tasks each runs now.
pub(crate) fn workers(workers: &[WorkerView], jobs: &[JobStatus], tls: bool) -> Content {
    let scheme = if tls { "https" } else { "http" };
    let mut html = String::from(
        "<h1>Workers</h1><table class=\"workers\"><thead><tr><th>worker</th><th>address</th>\
         <th>state</th><th>task slots</th><th>running tasks</th><th>last heartbeat</th>\
         <th>metrics</th></tr></thead><tbody>",
    );
    if workers.is_empty() {
        html.push_str("<tr><td colspan=\"7\">No workers have joined.</td></tr>");
    }
    for worker in workers {
        let running = jobs
            .iter()
            .filter(|job| !job.is_finished())
            .flat_map(|job| &job.stages)
            .flat_map(|stage| &stage.tasks)
            .filter(|task| {
                task.state == TaskState::Running && task.worker_id.as_ref() == Some(&worker.id)
            })
            .count();
        let endpoint = escape(&worker.endpoint);
        let _ = write!(
            html,
            "<tr id=\"worker-{id}\"><td>{id}</td><td>{endpoint}</td><td>{state}</td><td>{slots}</td>\
             <td class=\"num\">{running}</td><td>{ago} ago</td>\
             <td><a href=\"{scheme}://{endpoint}/metrics\">/metrics</a></td></tr>",
            id = escape(worker.id.as_str()),
            state = state_badge(if worker.alive { "ALIVE" } else { "DEAD" }),
            slots = worker.task_slots,
            ago = duration_ms(worker.since_last_heartbeat.as_millis()),
        );
    }
    html.push_str(
        "</tbody></table><p class=\"hint\">Memory and spool use are in each worker's metrics \
         (<code>tally_worker_memory_reserved_bytes</code>, <code>tally_worker_spool_bytes</code>).</p>",
    );
    Content { html, live: true }
}

/// Tables and materialized views, with what each view covers.
pub(crate) fn tables(tables: &[TableView]) -> Content {
    let mut html = String::from(
        "<h1>Tables</h1><table class=\"tables\"><thead><tr><th>name</th><th>kind</th>\
         <th>format</th><th>location</th><th>bucketing</th><th>columns</th><th>coverage</th>\
         </tr></thead><tbody>",
    );
    if tables.is_empty() {
        html.push_str("<tr><td colspan=\"7\">No tables are registered.</td></tr>");
    }
    for table in tables {
        let columns: Vec<String> = table
            .schema
            .fields()
            .iter()
            .map(|f| format!("{} {}", f.name(), f.data_type()))
            .collect();
        let _ = write!(
            html,
            "<tr id=\"table-{name}\"><td>{name}</td><td>{kind}</td><td>{format}</td><td>{path}</td>\
             <td>{bucketing}</td><td class=\"columns\">{columns}</td><td>{coverage}</td></tr>",
            name = escape(&table.name),
            kind = if table.view.is_some() {
                "materialized view"
            } else {
                "table"
            },
            format = escape(table.format.as_str()),
            path = escape(&table.path.to_string_lossy()),
            bucketing = escape(table.bucketing.as_deref().unwrap_or("")),
            columns = escape(&columns.join(", ")),
            coverage = escape(table.view.as_deref().unwrap_or("")),
        );
    }
    html.push_str("</tbody></table>");
    Content { html, live: false }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ui::test_support::three_stage_job;
    use tally_common::job_status::JobState;

    #[test]
    fn the_job_page_shows_figures_graph_stages_and_escapes_sql() {
        let job = three_stage_job();
        let page = super::job(&job);
        assert!(!page.live);
        assert!(
            page.html.contains("SELECT &lt;b&gt; FROM t"),
            "{}",
            page.html
        );
        assert!(page.html.contains("id=\"dag\""));
        assert!(
            page.html.contains("data-bytes=\"2501000\""),
            "{}",
            page.html
        );
        assert!(page.html.contains("ShuffleWriterExec &lt;x&gt;"));
        assert!(!page.html.contains("Cancel"));
        for stage in 1..=3 {
            assert!(page.html.contains(&format!("id=\"stage-{stage}\"")));
        }
    }

    #[test]
    fn running_jobs_are_live_and_can_be_cancelled() {
        let mut job = three_stage_job();
        job.state = JobState::Running;
        job.stages[2].state = StageState::Running;
        job.stages[2].tasks_succeeded = 1;
        let list = jobs(vec![job.clone(), three_stage_job()]);
        assert!(list.live);
        assert!(list.html.contains("id=\"cancel-a1b2c3d4\""));
        assert!(list.html.contains("2/3 stages, 5/6 tasks"), "{}", list.html);
        assert!(super::job(&job).live);
    }
}
