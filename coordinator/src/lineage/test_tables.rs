//! The tables lineage tests plan over: `clicks (ad, clicks, day, country)` and
//! `ads (ad, campaign)`, with no rows (only their plans are looked at).

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema};
use datafusion::datasource::empty::EmptyTable;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;

/// The optimized logical plan of `sql` over the test tables.
pub(super) async fn optimized_plan(sql: &str) -> LogicalPlan {
    let ctx = SessionContext::new();
    let table = |fields: Vec<Field>| Arc::new(EmptyTable::new(Arc::new(Schema::new(fields))));
    let clicks = table(vec![
        Field::new("ad", DataType::Int64, false),
        Field::new("clicks", DataType::Int64, false),
        Field::new("day", DataType::Utf8, false),
        Field::new("country", DataType::Utf8, false),
    ]);
    let ads = table(vec![
        Field::new("ad", DataType::Int64, false),
        Field::new("campaign", DataType::Utf8, false),
    ]);
    ctx.register_table("clicks", clicks).unwrap();
    ctx.register_table("ads", ads).unwrap();
    ctx.sql(sql).await.unwrap().into_optimized_plan().unwrap()
}
