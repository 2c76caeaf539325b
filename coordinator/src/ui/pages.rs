//! The pages, as HTML made from the coordinator's own types. Every page has a live part
//! (`<main>`) that the script fetches again while something on it is running.

use std::fmt::Write;

use tally_common::job_status::{JobStatus, NaivePlan, StageState, StageStatus, TaskState};

use super::dag;
use super::format::{duration_ms, escape, grouped, human_bytes, stage_state, task_state};
use crate::jobs::WorkerView;
use crate::sql::catalog::TableView;

/// A page's live part, and whether it is worth refreshing.
pub(crate) struct Content {
    pub html: String,
    pub live: bool,
}

/// A whole page around `content`; with `log_out`, the bar offers to end the browser's session.
pub(crate) fn layout(title: &str, content: &Content, log_out: bool) -> String {
    let log_out = if log_out {
        "<form method=\"post\" action=\"/logout\" class=\"logout\">\
         <button type=\"submit\" id=\"log-out\">Log out</button></form>"
    } else {
        ""
    };
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <title>Tally · {title}</title><link rel=\"stylesheet\" href=\"/assets/ui.css\">\
         <script src=\"/assets/ui.js\" defer></script></head><body>\
         <nav><span class=\"brand\">Tally</span><a href=\"/\">Jobs</a><a href=\"/workers\">Workers</a>\
         <a href=\"/tables\">Tables</a><a href=\"/metrics\">Metrics</a>{log_out}</nav>\
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
    if let Some(naive) = &job.naive {
        html.push_str(&naive_section(naive, shuffled));
    }
    for stage in &job.stages {
        html.push_str(&stage_section(stage));
    }
    Content {
        html,
        live: !job.is_finished(),
    }
}

/// EXPLAIN ANALYZE's comparison: the naive plan's exchanges as estimated, under the graph.
/// Its stages are not this job's (other rules cut the plan elsewhere), so its figures cannot
/// sit on this graph's arrows.
fn naive_section(naive: &NaivePlan, shuffled: u64) -> String {
    let total = naive.bytes();
    let at_least = if naive.complete() { "" } else { "at least " };
    let mut html = String::new();
    let _ = write!(
        html,
        "<section class=\"naive\" id=\"naive\"><h3>Naive plan, for comparison</h3>\
         <p class=\"hint\">EXPLAIN ANALYZE also planned this query with \
         <code>tally.planner = naive</code> and estimated from table statistics what that plan \
         would shuffle on {workers} workers (the share of each exchange that leaves its \
         worker). The naive plan was not run, and its stages are not this job's stages, so \
         its figures stand here, one per exchange (the output of one naive stage), rather than \
         on the arrows above. Estimates count Arrow data in memory; the arrows count bytes on \
         the wire, after compression.</p>\
         <dl class=\"figures\"><dt>naive, estimated</dt><dd id=\"naive-bytes\" data-bytes=\"{total}\" \
         data-complete=\"{complete}\">{at_least}{total_g} B ({total_h}) in {count} exchanges</dd>\
         <dt>this job, measured</dt><dd>{shuffled_g} B ({shuffled_h})</dd></dl>\
         <table class=\"naive\"><thead><tr><th>naive exchange</th><th>output of</th>\
         <th>split as</th><th>estimated bytes</th></tr></thead><tbody>",
        workers = naive.workers,
        complete = naive.complete(),
        total_g = grouped(total),
        total_h = human_bytes(total),
        count = naive.exchanges.len(),
        shuffled_g = grouped(shuffled),
        shuffled_h = human_bytes(shuffled),
    );
    for (n, exchange) in naive.exchanges.iter().enumerate() {
        let (bytes, shown) = match exchange.bytes {
            Some(b) => (
                b.to_string(),
                format!("{} B ({})", grouped(b), human_bytes(b)),
            ),
            None => (String::new(), "no estimate".to_string()),
        };
        let _ = write!(
            html,
            "<tr class=\"naive-exchange\" data-bytes=\"{bytes}\"><td>{n}</td><td>{input}</td>\
             <td>{output}</td><td class=\"num\">{shown}</td></tr>",
            n = n + 1,
            input = escape(&exchange.input),
            output = escape(&exchange.output),
        );
    }
    html.push_str("</tbody></table></section>");
    html
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
    // Open while the stage runs, so its tasks' times can be watched moving.
    let open = if stage.state == StageState::Running {
        " open"
    } else {
        ""
    };
    let _ = write!(
        html,
        "<details class=\"tasks\"{open}><summary>tasks</summary><table class=\"tasks\"><thead><tr>\
         <th>partition</th><th>attempt</th><th>worker</th><th>state</th><th>time</th>\
         <th>spilled</th><th>rows out</th><th>bytes out</th></tr></thead><tbody>",
    );
    for task in &stage.tasks {
        let _ = write!(
            html,
            "<tr class=\"task\" data-partition=\"{partition}\" data-elapsed-ms=\"{ms}\" \
             data-spilled=\"{spilled}\" data-rows=\"{rows}\" data-bytes=\"{bytes}\"><td>{partition}</td>\
             <td>{attempt}</td><td>{worker}</td><td>{state}</td><td class=\"num\">{time}</td>\
             <td class=\"num\">{spilled_h}</td><td class=\"num\">{rows_g}</td><td class=\"num\">{bytes_h}</td></tr>",
            partition = task.partition,
            ms = task.elapsed.as_millis(),
            spilled = task.spilled_bytes,
            rows = task.output_rows,
            bytes = task.output_bytes,
            attempt = task.attempt,
            worker = task
                .worker_id
                .as_ref()
                .map_or("-".to_string(), |w| escape(w.as_str())),
            state = state_badge(task_state(task.state)),
            time = duration_ms(task.elapsed.as_millis()),
            spilled_h = human_bytes(task.spilled_bytes),
            rows_g = grouped(task.output_rows),
            bytes_h = human_bytes(task.output_bytes),
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
         <th>state</th><th>task slots</th><th>running tasks</th><th>memory reserved / limit</th>\
         <th>spool</th><th>last heartbeat</th><th>metrics</th></tr></thead><tbody>",
    );
    if workers.is_empty() {
        html.push_str("<tr><td colspan=\"9\">No workers have joined.</td></tr>");
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
        let (memory, spool) = match worker.load {
            Some(load) => (
                format!(
                    "<td class=\"num memory\" data-reserved=\"{r}\" data-limit=\"{l}\">{rh} / {lh}</td>",
                    r = load.memory_reserved_bytes,
                    l = load.memory_limit_bytes,
                    rh = human_bytes(load.memory_reserved_bytes),
                    lh = human_bytes(load.memory_limit_bytes),
                ),
                format!(
                    "<td class=\"num spool\" data-bytes=\"{b}\">{bh}</td>",
                    b = load.spool_bytes,
                    bh = human_bytes(load.spool_bytes),
                ),
            ),
            None => (
                "<td class=\"memory\" title=\"not reported: it sends no heartbeats here\">-</td>"
                    .to_string(),
                "<td class=\"spool\">-</td>".to_string(),
            ),
        };
        let _ = write!(
            html,
            "<tr id=\"worker-{id}\"><td>{id}</td><td>{endpoint}</td><td>{state}</td><td>{slots}</td>\
             <td class=\"num\">{running}</td>{memory}{spool}<td>{ago} ago</td>\
             <td><a href=\"{scheme}://{endpoint}/metrics\">/metrics</a></td></tr>",
            id = escape(worker.id.as_str()),
            state = state_badge(if worker.alive { "ALIVE" } else { "DEAD" }),
            slots = worker.task_slots,
            ago = duration_ms(worker.since_last_heartbeat.as_millis()),
        );
    }
    html.push_str(
        "</tbody></table><p class=\"hint\">Memory and spool use as each worker's last heartbeat \
         reported them (every half second); workers of a cluster in etcd send no heartbeats to \
         the coordinator, so theirs are only in their own metrics.</p>",
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
    use std::time::Duration;

    use crate::jobs::WorkerLoad;
    use crate::ui::test_support::three_stage_job;
    use tally_common::ids::WorkerId;
    use tally_common::job_status::{JobState, NaiveExchange};

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
    fn each_task_row_shows_its_time_spill_and_output() {
        let page = super::job(&three_stage_job());
        // Stage 2's first task: 1,202 ms, 10 B spilled, 250 rows and 2,500,000 B out.
        let row = "<tr class=\"task\" data-partition=\"0\" data-elapsed-ms=\"1202\" \
                   data-spilled=\"10\" data-rows=\"250\" data-bytes=\"2500000\">";
        assert!(page.html.contains(row), "{}", page.html);
        assert!(
            page.html.contains(
                "<td class=\"num\">1.2 s</td><td class=\"num\">10 B</td>\
             <td class=\"num\">250</td><td class=\"num\">2.4 MiB</td>"
            ),
            "{}",
            page.html
        );
        let mut running = three_stage_job();
        running.stages[2].state = StageState::Running;
        let page = super::job(&running);
        assert_eq!(
            page.html.matches("<details class=\"tasks\" open>").count(),
            1
        );
    }

    #[test]
    fn the_naive_plans_estimate_stands_beside_the_graph_when_explain_analyze_made_one() {
        let mut job = three_stage_job();
        assert!(!super::job(&job).html.contains("id=\"naive\""));
        job.naive = Some(NaivePlan {
            workers: 3,
            exchanges: vec![
                NaiveExchange {
                    input: "DataSourceExec".to_string(),
                    output: "hash([k@0], 4)".to_string(),
                    bytes: Some(3_000_000),
                },
                NaiveExchange {
                    input: "AggregateExec".to_string(),
                    output: "gather".to_string(),
                    bytes: Some(500),
                },
            ],
        });
        let page = super::job(&job).html;
        assert!(
            page.contains("id=\"naive-bytes\" data-bytes=\"3000500\" data-complete=\"true\">3,000,500 B (2.9 MiB) in 2 exchanges"),
            "{page}"
        );
        // Beside this job's measured total, 2,501,000 B.
        assert!(page.contains("<dd>2,501,000 B (2.4 MiB)</dd>"), "{page}");
        assert!(page.contains("<td>hash([k@0], 4)</td>"), "{page}");
        assert_eq!(page.matches("class=\"naive-exchange\"").count(), 2);

        // An exchange without statistics makes the total a lower bound.
        job.naive.as_mut().unwrap().exchanges[1].bytes = None;
        let page = super::job(&job).html;
        assert!(
            page.contains("data-complete=\"false\">at least 3,000,000 B"),
            "{page}"
        );
        assert!(page.contains("no estimate"), "{page}");
    }

    #[test]
    fn workers_show_the_memory_and_spool_their_heartbeats_reported() {
        let worker = |id: &str, load| WorkerView {
            id: WorkerId::from(id),
            endpoint: format!("{id}:1"),
            task_slots: 2,
            alive: true,
            since_last_heartbeat: Duration::from_millis(200),
            load,
        };
        let workers = [
            worker(
                "w-1",
                Some(WorkerLoad {
                    memory_reserved_bytes: 3 << 20,
                    memory_limit_bytes: 1 << 30,
                    spool_bytes: 4096,
                }),
            ),
            worker("w-2", None),
        ];
        let page = super::workers(&workers, &[three_stage_job()], false).html;
        assert!(
            page.contains(
                "data-reserved=\"3145728\" data-limit=\"1073741824\">3.0 MiB / 1.0 GiB</td>"
            ),
            "{page}"
        );
        assert!(page.contains("data-bytes=\"4096\">4.0 KiB</td>"), "{page}");
        let unreported = page.split("id=\"worker-w-2\"").nth(1).unwrap();
        assert!(unreported.contains(">-</td>"), "{page}");
    }

    #[test]
    fn pages_offer_to_log_out_only_where_people_log_in() {
        let content = || Content {
            html: String::new(),
            live: false,
        };
        assert!(layout("Jobs", &content(), true).contains("action=\"/logout\""));
        assert!(!layout("Jobs", &content(), false).contains("/logout"));
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
