//! Snapshots of distributed plans: a change to how a query is cut into stages, or to which
//! rules fire, shows up as a readable diff (`cargo insta review`).

use std::sync::Arc;

use datafusion::arrow::array::{Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use tally_common::ids::JobId;

use super::{DistributedPlan, plan_job};
use crate::options::Rules;
use crate::sql::session::{JobSettings, base_config, job_session};

const WORKERS: usize = 3;

/// `orders(o_orderkey, o_priority)` and `lineitem(l_orderkey, l_qty, l_mode)` in memory,
/// 3 partitions each, as 3 scanned files would give.
fn context() -> SessionContext {
    let ctx = SessionContext::new_with_config(base_config());
    let orders: SchemaRef = Arc::new(Schema::new(vec![
        Field::new("o_orderkey", DataType::Int64, false),
        Field::new("o_priority", DataType::Utf8, false),
    ]));
    let lineitem: SchemaRef = Arc::new(Schema::new(vec![
        Field::new("l_orderkey", DataType::Int64, false),
        Field::new("l_qty", DataType::Int64, false),
        Field::new("l_mode", DataType::Utf8, false),
    ]));
    let orders_part = |start: i64| {
        RecordBatch::try_new(
            orders.clone(),
            vec![
                Arc::new(Int64Array::from_iter_values(start..start + 100)),
                Arc::new(StringArray::from_iter_values(
                    (0..100).map(|i| format!("p{}", i % 5)),
                )),
            ],
        )
        .unwrap()
    };
    let lineitem_part = |start: i64| {
        RecordBatch::try_new(
            lineitem.clone(),
            vec![
                Arc::new(Int64Array::from_iter_values(
                    (start..start + 400).map(|k| k / 4),
                )),
                Arc::new(Int64Array::from_iter_values(0..400)),
                Arc::new(StringArray::from_iter_values(
                    (0..400).map(|i| format!("m{}", i % 7)),
                )),
            ],
        )
        .unwrap()
    };
    let parts = |f: &dyn Fn(i64) -> RecordBatch, step: i64| {
        (0..3).map(|i| vec![f(i * step)]).collect::<Vec<_>>()
    };
    ctx.register_table(
        "orders",
        Arc::new(MemTable::try_new(orders.clone(), parts(&orders_part, 100)).unwrap()),
    )
    .unwrap();
    ctx.register_table(
        "lineitem",
        Arc::new(MemTable::try_new(lineitem.clone(), parts(&lineitem_part, 400)).unwrap()),
    )
    .unwrap();
    ctx
}

async fn distributed(sql: &str, settings: &[(&str, &str)]) -> DistributedPlan {
    let settings = JobSettings(
        settings
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    let session = job_session(&context(), &settings, WORKERS * 2).unwrap();
    let state = session.ctx.state();
    let logical = state.create_logical_plan(sql).await.unwrap();
    let physical = state.create_physical_plan(&logical).await.unwrap();
    let rules = Rules::from_config(state.config().options()).unwrap();
    plan_job(
        &JobId::from("snapshot"),
        physical,
        &rules,
        WORKERS * 2,
        WORKERS,
    )
    .unwrap()
}

fn render(plan: &DistributedPlan) -> String {
    let mut text = String::new();
    for stage in &plan.stages {
        let inputs: Vec<String> = stage.inputs.iter().map(|s| s.to_string()).collect();
        text.push_str(&format!(
            "stage {} tasks={} reads=[{}] exchange={:?} rules=[{}]\n",
            stage.id,
            stage.task_count(),
            inputs.join(","),
            stage.exchange,
            stage.rules.join("; ")
        ));
        let plan = datafusion::physical_plan::displayable(stage.plan.as_ref())
            .indent(false)
            .to_string();
        for line in plan.lines() {
            text.push_str("  ");
            text.push_str(line);
            text.push('\n');
        }
    }
    text
}

const REPORT: &str =
    "SELECT l_mode, sum(l_qty) AS qty, count(*) AS n FROM lineitem GROUP BY l_mode ORDER BY l_mode";
const JOIN_REPORT: &str = "SELECT o_priority, sum(l_qty) AS qty FROM orders \
                           JOIN lineitem ON l_orderkey = o_orderkey GROUP BY o_priority";
const EXISTS: &str = "SELECT o_priority, count(*) FROM orders WHERE EXISTS \
                      (SELECT 1 FROM lineitem WHERE l_orderkey = o_orderkey AND l_qty > 390) \
                      GROUP BY o_priority";

#[tokio::test]
async fn report_with_partial_aggregate_worker_combine_and_final_merge() {
    insta::assert_snapshot!(render(&distributed(REPORT, &[]).await));
}

#[tokio::test]
async fn report_in_naive_mode_shuffles_raw_rows() {
    insta::assert_snapshot!(render(
        &distributed(REPORT, &[("tally.planner", "naive")]).await
    ));
}

#[tokio::test]
async fn join_report_broadcasts_the_small_side() {
    insta::assert_snapshot!(render(&distributed(JOIN_REPORT, &[]).await));
}

#[tokio::test]
async fn join_report_without_broadcast_hash_partitions_both_sides() {
    let settings = [("tally.broadcast_threshold_bytes", "0")];
    insta::assert_snapshot!(render(&distributed(JOIN_REPORT, &settings).await));
}

#[tokio::test]
async fn exists_subquery_becomes_a_partitioned_semi_join() {
    insta::assert_snapshot!(render(&distributed(EXISTS, &[]).await));
}
