//! Flight SQL on the coordinator's port, through arrow-flight's own `FlightSqlServiceClient`:
//! a query's endpoints name the workers that hold its answer, which stream it with the
//! cluster token and give what `tally sql` gets; prepared statements bind their parameters;
//! the listings name the catalog's tables; errors carry the message; a wrong token is refused.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow_flight::FlightInfo;
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::sql::{CommandGetTables, SqlInfo};
use futures::TryStreamExt;
use tally_client::{Client, LocalCluster, LocalClusterOptions};
use tally_common::auth::ClusterToken;
use tally_common::security::ClusterSecurity;
use tally_coordinator::CoordinatorConfig;
use tally_tests::compare::assert_same_results;
use tally_tests::harness::tpch_dir;
use tonic::transport::{Channel, Endpoint};

async fn guarded_cluster(token: &ClusterToken) -> LocalCluster {
    let cluster = LocalCluster::start_with(LocalClusterOptions {
        workers: 3,
        coordinator: CoordinatorConfig {
            security: ClusterSecurity::new(Some(token.clone()), None),
            ..Default::default()
        },
        ..Default::default()
    })
    .await
    .expect("start a guarded cluster");
    for table in ["lineitem", "orders", "nation"] {
        cluster
            .register_table(table, tpch_dir().join(table).to_str().unwrap())
            .await
            .unwrap();
    }
    cluster
}

async fn channel(uri: &str) -> Channel {
    Endpoint::from_shared(uri.to_string())
        .unwrap()
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connect to {uri}: {e}"))
}

async fn flight_sql(endpoint: &str, token: &str) -> FlightSqlServiceClient<Channel> {
    let mut client = FlightSqlServiceClient::new(channel(&format!("http://{endpoint}")).await);
    client.set_token(token.to_string());
    client
}

/// Fetches every endpoint of `info` where it says: from its worker, or from the coordinator.
async fn fetch(info: FlightInfo, coordinator: &str, token: &str) -> Vec<RecordBatch> {
    let mut batches = Vec::new();
    for endpoint in info.endpoint {
        let at = match endpoint.location.first() {
            Some(location) => {
                let address = location
                    .uri
                    .strip_prefix("grpc+tcp://")
                    .unwrap_or_else(|| panic!("location {}", location.uri));
                address.to_string()
            }
            None => coordinator.to_string(),
        };
        let mut client = flight_sql(&at, token).await;
        let ticket = endpoint.ticket.expect("an endpoint has a ticket");
        let stream = client.do_get(ticket).await.unwrap();
        batches.extend(stream.try_collect::<Vec<_>>().await.unwrap());
    }
    batches
}

#[tokio::test]
async fn queries_stream_from_the_workers_and_equal_the_tally_client_answer() {
    let token = ClusterToken::random();
    let cluster = guarded_cluster(&token).await;
    let coordinator = cluster.endpoint().to_string();
    let secret = token.expose_secret();
    let workers = cluster.worker_endpoints();
    let tally = Client::connect_with(
        &coordinator,
        ClusterSecurity::new(Some(token.clone()), None),
    )
    .await
    .unwrap();

    let query = "SELECT l_returnflag, l_linestatus, sum(l_quantity) AS qty, count(*) AS n \
                 FROM lineitem GROUP BY 1, 2 ORDER BY 1, 2";
    let info = flight_sql(&coordinator, secret)
        .await
        .execute(query.to_string(), None)
        .await
        .unwrap();
    let job_id = String::from_utf8(info.app_metadata.to_vec()).unwrap();
    assert!(!info.endpoint.is_empty());
    for endpoint in &info.endpoint {
        let location = &endpoint.location[0].uri;
        assert!(
            workers.iter().any(|w| location.ends_with(w.as_str())),
            "{location} is not a worker of {workers:?}"
        );
        assert_eq!(endpoint.app_metadata, job_id.as_bytes());
    }
    let answer = fetch(info, &coordinator, secret).await;
    let expected = tally.sql(query).await.unwrap();
    assert_same_results(query, &expected.batches, &answer, true);

    // The job behind it is Tally's, with its figures.
    let status = tally
        .job(&tally_client::JobId::from(job_id.clone()))
        .await
        .unwrap();
    assert_eq!(status.state, tally_client::JobState::Succeeded);

    cluster.shutdown().await;
}

#[tokio::test]
async fn prepared_statements_bind_parameters_and_listings_name_the_tables() {
    let token = ClusterToken::random();
    let cluster = guarded_cluster(&token).await;
    let coordinator = cluster.endpoint().to_string();
    let secret = token.expose_secret();
    let mut client = flight_sql(&coordinator, secret).await;

    let mut statement = client
        .prepare(
            "SELECT n_name FROM nation WHERE n_regionkey = $1 AND n_name <> $2 ORDER BY n_name"
                .to_string(),
            None,
        )
        .await
        .unwrap();
    assert_eq!(statement.parameter_schema().unwrap().fields().len(), 2);
    let bind = |region: i64, skip: &str| {
        let region: ArrayRef = Arc::new(Int64Array::from(vec![region]));
        let skip: ArrayRef = Arc::new(StringArray::from(vec![skip]));
        RecordBatch::try_from_iter([("$1", region), ("$2", skip)]).unwrap()
    };
    statement.set_parameters(bind(1, "BRAZIL")).unwrap();
    let names = |batches: Vec<RecordBatch>| -> Vec<String> {
        let batches: Vec<RecordBatch> = batches.into_iter().filter(|b| b.num_rows() > 0).collect();
        let cast = |b: &RecordBatch| {
            arrow::compute::cast(b.column(0), &arrow::datatypes::DataType::Utf8).unwrap()
        };
        batches
            .iter()
            .flat_map(|b| {
                let column = cast(b);
                let strings = column.as_any().downcast_ref::<StringArray>().unwrap();
                strings
                    .iter()
                    .map(|s| s.unwrap().to_string())
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let info = statement.execute().await.unwrap();
    let america = names(fetch(info, &coordinator, secret).await);
    assert_eq!(america, ["ARGENTINA", "CANADA", "PERU", "UNITED STATES"]);
    // Bound again, the same statement answers for the new values.
    statement.set_parameters(bind(4, "EGYPT")).unwrap();
    let info = statement.execute().await.unwrap();
    let middle_east = names(fetch(info, &coordinator, secret).await);
    assert_eq!(middle_east, ["IRAN", "IRAQ", "JORDAN", "SAUDI ARABIA"]);
    statement.close().await.unwrap();

    let info = client
        .get_tables(CommandGetTables {
            table_name_filter_pattern: Some("%e%".to_string()),
            include_schema: true,
            ..Default::default()
        })
        .await
        .unwrap();
    let tables = names(
        fetch(info, &coordinator, secret)
            .await
            .into_iter()
            .map(|b| b.project(&[2]).unwrap())
            .collect(),
    );
    assert_eq!(tables, ["lineitem", "orders"]);

    let info = client
        .get_sql_info(vec![SqlInfo::FlightSqlServerName])
        .await
        .unwrap();
    let batches = fetch(info, &coordinator, secret).await;
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 1);

    // An open connection holds up the server's graceful shutdown.
    drop(client);
    cluster.shutdown().await;
}

#[tokio::test]
async fn errors_carry_their_message_and_a_wrong_token_is_refused() {
    let token = ClusterToken::random();
    let cluster = guarded_cluster(&token).await;
    let coordinator = cluster.endpoint().to_string();
    let mut client = flight_sql(&coordinator, token.expose_secret()).await;

    let err = client
        .execute("SELEC 1".to_string(), None)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("Expected: an SQL statement, found: SELEC"),
        "{err}"
    );
    let err = client
        .execute("SELECT * FROM nowhere".to_string(), None)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("table nowhere not found"), "{err}");

    let wrong = ClusterToken::random();
    let mut intruder = flight_sql(&coordinator, wrong.expose_secret()).await;
    let err = intruder
        .execute("SELECT 1".to_string(), None)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("wrong cluster token"), "{err}");

    // The same cluster still answers.
    let info = client
        .execute("SELECT 1 AS one".to_string(), None)
        .await
        .unwrap();
    let rows: usize = fetch(info, &coordinator, token.expose_secret())
        .await
        .iter()
        .map(|b| b.num_rows())
        .sum();
    assert_eq!(rows, 1);

    drop((client, intruder));
    cluster.shutdown().await;
}
