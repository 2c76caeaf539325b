//! OpenLineage events of jobs that write tables (`--openlineage-url file:PATH`): START and
//! COMPLETE (or FAIL) under one run id, the tables read and written with their schemas, and
//! the column lineage of a join + aggregation.

use std::path::Path;
use std::time::Duration;

use datafusion::prelude::SessionContext;
use serde_json::Value;
use tally_client::{Client, LocalCluster, LocalClusterOptions};
use tally_coordinator::{CoordinatorConfig, LineageTarget};
use tally_tests::harness::run_with;

const SPARK: &[(&str, &str)] = &[("tally.sql_dialect", "spark")];

async fn write_table(client: &Client, root: &Path, name: &str, sql: &str) {
    let folder = root.join(name);
    std::fs::create_dir_all(&folder).unwrap();
    SessionContext::new()
        .sql(sql)
        .await
        .unwrap()
        .write_parquet(
            folder.join("part-0.parquet").to_str().unwrap(),
            Default::default(),
            None,
        )
        .await
        .unwrap();
    client
        .sql(&format!(
            "CREATE EXTERNAL TABLE {name} STORED AS PARQUET LOCATION '{}'",
            folder.display()
        ))
        .await
        .unwrap();
}

/// The events appended to `path` so far.
fn read_events(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The events in `path` once it holds `count` (they are sent after the job ends).
async fn events(path: &Path, count: usize) -> Vec<Value> {
    for _ in 0..100 {
        let lines = read_events(path);
        if lines.len() >= count {
            assert_eq!(lines.len(), count, "{lines:#?}");
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("fewer than {count} events in {}", path.display());
}

/// An input of an output column: (table folder's name, field, subtype).
type InputField = (String, String, String);

/// `output column -> [input field]` of an event's output, sorted.
fn column_lineage(event: &Value) -> Vec<(String, Vec<InputField>)> {
    let fields = event["outputs"][0]["facets"]["columnLineage"]["fields"]
        .as_object()
        .unwrap();
    let mut lineage: Vec<_> = fields
        .iter()
        .map(|(column, sources)| {
            let mut inputs: Vec<_> = sources["inputFields"]
                .as_array()
                .unwrap()
                .iter()
                .map(|input| {
                    let name = input["name"].as_str().unwrap();
                    let table = name.rsplit('/').next().unwrap().to_string();
                    let field = input["field"].as_str().unwrap().to_string();
                    let subtype = input["transformations"][0]["subtype"]
                        .as_str()
                        .unwrap()
                        .to_string();
                    (table, field, subtype)
                })
                .collect();
            inputs.sort();
            (column.clone(), inputs)
        })
        .collect();
    lineage.sort();
    lineage
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writing_jobs_send_start_and_end_events_with_column_lineage() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let events_file = root.join("lineage.jsonl");
    let cluster = LocalCluster::start_with(LocalClusterOptions {
        workers: 2,
        coordinator: CoordinatorConfig {
            data_roots: vec![root.clone()],
            table_dir: root.join("tables"),
            openlineage: Some(LineageTarget::File(events_file.clone())),
            openlineage_namespace: "reports".to_string(),
            ..Default::default()
        },
        ..Default::default()
    })
    .await
    .unwrap();
    let client = cluster.client().await.unwrap();
    write_table(
        &client,
        &root,
        "clicks",
        "SELECT CAST(ad AS BIGINT) AS ad, CAST(clicks AS BIGINT) AS clicks, country \
         FROM (VALUES (1, 5, 'de'), (2, 7, 'fr'), (1, 1, 'fr')) AS t(ad, clicks, country)",
    )
    .await;
    write_table(
        &client,
        &root,
        "ads",
        "SELECT CAST(ad AS BIGINT) AS ad, campaign FROM (VALUES (1, 'spring'), (2, 'fall')) AS t(ad, campaign)",
    )
    .await;
    // Reads register no lineage: only jobs that write tables do.
    run_with(&client, "SELECT count(*) FROM clicks", &[]).await;

    let create = "CREATE TABLE campaign_clicks AS \
        SELECT a.campaign, upper(c.country) AS country, sum(c.clicks) AS clicks \
        FROM clicks c JOIN ads a ON c.ad = a.ad GROUP BY a.campaign, upper(c.country)";
    run_with(&client, create, &[]).await;
    let sent = events(&events_file, 2).await;
    let (start, complete) = (&sent[0], &sent[1]);
    assert_eq!(start["eventType"], "START");
    assert_eq!(complete["eventType"], "COMPLETE");
    assert_eq!(start["run"]["runId"], complete["run"]["runId"]);
    assert_eq!(complete["job"]["namespace"], "reports");
    assert_eq!(complete["job"]["name"], "create_table.campaign_clicks");
    assert_eq!(complete["job"]["facets"]["sql"]["query"], create);
    let inputs: Vec<&str> = complete["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        inputs,
        vec![
            root.join("ads").to_str().unwrap(),
            root.join("clicks").to_str().unwrap()
        ]
    );
    assert!(
        complete["inputs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["namespace"] == "file")
    );
    let output = &complete["outputs"][0];
    assert_eq!(
        output["name"],
        root.join("tables")
            .join("campaign_clicks")
            .to_str()
            .unwrap()
    );
    let schema: Vec<&str> = output["facets"]["schema"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(schema, vec!["campaign", "country", "clicks"]);
    let s = |v: &str| v.to_string();
    assert_eq!(
        column_lineage(complete),
        vec![
            (
                s("campaign"),
                vec![(s("ads"), s("campaign"), s("IDENTITY"))]
            ),
            (
                s("clicks"),
                vec![(s("clicks"), s("clicks"), s("AGGREGATION"))]
            ),
            (
                s("country"),
                vec![(s("clicks"), s("country"), s("TRANSFORMATION"))]
            ),
        ]
    );

    // The columns that join and group the rows are indirect sources of every row.
    let mut indirect: Vec<(String, String, String)> =
        complete["outputs"][0]["facets"]["columnLineage"]["dataset"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|input| {
                let table = input["name"]
                    .as_str()
                    .unwrap()
                    .rsplit('/')
                    .next()
                    .unwrap()
                    .to_string();
                let field = input["field"].as_str().unwrap().to_string();
                input["transformations"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(move |t| {
                        assert_eq!(t["type"], "INDIRECT");
                        (
                            table.clone(),
                            field.clone(),
                            t["subtype"].as_str().unwrap().to_string(),
                        )
                    })
            })
            .collect();
    indirect.sort();
    assert_eq!(
        indirect,
        vec![
            (s("ads"), s("ad"), s("JOIN")),
            (s("ads"), s("campaign"), s("GROUP_BY")),
            (s("clicks"), s("ad"), s("JOIN")),
            (s("clicks"), s("country"), s("GROUP_BY")),
        ]
    );

    // A job that fails ends its run with FAIL and the reason.
    run_with(
        &client,
        "CREATE TABLE by_day (ad BIGINT, day STRING) USING parquet PARTITIONED BY (day)",
        SPARK,
    )
    .await;
    let failed = client
        .sql("INSERT INTO by_day SELECT ad, CASE WHEN ad = 2 THEN NULL ELSE 'x' END FROM clicks")
        .await;
    assert!(failed.is_err());
    let sent = events(&events_file, 4).await;
    assert_eq!(sent[2]["eventType"], "START");
    assert_eq!(sent[3]["eventType"], "FAIL");
    assert_eq!(sent[3]["job"]["name"], "insert.by_day");
    assert_eq!(sent[2]["run"]["runId"], sent[3]["run"]["runId"]);
    let message = sent[3]["run"]["facets"]["errorMessage"]["message"]
        .as_str()
        .unwrap();
    assert!(
        message.contains("partition column day is NULL"),
        "{message}"
    );
    // The static partition column has no source; the dynamic one comes from the query.
    let lineage = column_lineage(&sent[3]);
    assert_eq!(lineage[0].0, "ad");
    assert_eq!(lineage[0].1, vec![(s("clicks"), s("ad"), s("IDENTITY"))]);

    // A materialized view's refreshes are runs too, with the view's columns.
    run_with(
        &client,
        "CREATE MATERIALIZED VIEW clicks_by_ad AS SELECT ad, sum(clicks) AS clicks FROM clicks GROUP BY ad",
        &[],
    )
    .await;
    run_with(&client, "REFRESH MATERIALIZED VIEW clicks_by_ad", &[]).await;
    let refreshed = loop_until_named(&events_file, "refresh_view.clicks_by_ad").await;
    assert_eq!(
        refreshed["inputs"][0]["name"],
        root.join("clicks").to_str().unwrap()
    );
    assert_eq!(
        column_lineage(&refreshed),
        vec![
            (s("ad"), vec![(s("clicks"), s("ad"), s("IDENTITY"))]),
            (
                s("clicks"),
                vec![(s("clicks"), s("clicks"), s("AGGREGATION"))]
            ),
        ]
    );
}

/// The first COMPLETE event of job `name` in `path`, once it is there.
async fn loop_until_named(path: &Path, name: &str) -> Value {
    for _ in 0..100 {
        let found = read_events(path)
            .into_iter()
            .find(|e| e["job"]["name"] == name && e["eventType"] == "COMPLETE");
        if let Some(event) = found {
            return event;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no COMPLETE event of {name} in {}", path.display());
}
