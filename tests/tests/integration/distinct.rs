//! Exact COUNT(DISTINCT) with compact partial states, on 3 workers: a generated table of
//! 1,000,000 rows in 50 groups with 200,000 distinct integer values. The answer is checked
//! against counts computed here, and the shuffle bytes against the same query with the
//! compact-distinct rule off (DataFusion's (group, value) pairs), both measured.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, AsArray, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use datafusion::parquet::arrow::ArrowWriter;
use tally_client::{LocalCluster, QueryResult};
use tally_common::bucketing::{BucketSpec, BucketedParquetWriter};
use tally_tests::compare::assert_same_results;
use tally_tests::harness::run_with;

const ROWS: i64 = 1_000_000;
const GROUPS: u64 = 50;
const USERS: i64 = 200_000;
const FILES: i64 = 6;

/// Row `i`: user `(i * 7919) mod 200,000` (each user 5 times, so exactly 200,000 distinct
/// values, offset to 64-bit ids), group from a hash of `i`.
fn row(i: i64) -> (i64, i64) {
    let mut h = (i as u64).wrapping_add(0x9e37_79b9_7f4a_7c15);
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    let group = (h % GROUPS) as i64;
    let user = 5_000_000_000 + (i * 7919) % USERS;
    (group, user)
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("grp", DataType::Int64, false),
        Field::new("user_id", DataType::Int64, false),
    ]))
}

fn batch(rows: std::ops::Range<i64>) -> RecordBatch {
    let (groups, users): (Vec<i64>, Vec<i64>) = rows.map(row).unzip();
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(Int64Array::from(groups)),
            Arc::new(Int64Array::from(users)),
        ],
    )
    .unwrap()
}

/// The table as `FILES` Parquet files, rows in generation order.
fn write_table(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let per_file = ROWS / FILES;
    for file in 0..FILES {
        let end = if file == FILES - 1 {
            ROWS
        } else {
            (file + 1) * per_file
        };
        let out = std::fs::File::create(dir.join(format!("part-{file}.parquet"))).unwrap();
        let mut writer = ArrowWriter::try_new(out, schema(), None).unwrap();
        let mut start = file * per_file;
        while start < end {
            let stop = (start + 65_536).min(end);
            writer.write(&batch(start..stop)).unwrap();
            start = stop;
        }
        writer.close().unwrap();
    }
}

/// The same rows in 6 buckets by user_id.
fn write_bucketed(dir: &Path) {
    let spec = BucketSpec::new(vec!["user_id".to_string()], 6).unwrap();
    let mut writer = BucketedParquetWriter::try_new(dir, schema(), spec).unwrap();
    let mut start = 0;
    while start < ROWS {
        let stop = (start + 65_536).min(ROWS);
        writer.write(batch(start..stop)).unwrap();
        start = stop;
    }
    writer.finish().unwrap();
}

fn expected_counts() -> BTreeMap<i64, i64> {
    let mut sets: BTreeMap<i64, HashSet<i64>> = BTreeMap::new();
    for i in 0..ROWS {
        let (group, user) = row(i);
        sets.entry(group).or_default().insert(user);
    }
    sets.into_iter()
        .map(|(g, users)| (g, users.len() as i64))
        .collect()
}

fn counts(result: &QueryResult) -> BTreeMap<i64, i64> {
    let mut counts = BTreeMap::new();
    for batch in &result.batches {
        let groups = batch.column(0).as_primitive::<Int64Type>();
        let values = batch.column(1).as_primitive::<Int64Type>();
        for row in 0..batch.num_rows() {
            assert!(values.is_valid(row));
            counts.insert(groups.value(row), values.value(row));
        }
    }
    counts
}

const REACH: &str = "SELECT grp, count(DISTINCT user_id) FROM events GROUP BY grp";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn count_distinct_is_exact_and_ships_under_a_third_of_the_pairs_plan() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("events");
    write_table(&table);
    let expected = expected_counts();
    assert_eq!(expected.len(), GROUPS as usize);
    let cluster = LocalCluster::start(3).await.unwrap();
    cluster
        .register_table("events", table.to_str().unwrap())
        .await
        .unwrap();
    let client = cluster.client().await.unwrap();

    let compact = run_with(&client, REACH, &[]).await;
    let pairs = run_with(&client, REACH, &[("tally.compact_distinct", "false")]).await;
    assert_eq!(counts(&compact), expected);
    assert_eq!(counts(&pairs), expected);
    let ratio = compact.metrics.shuffle_bytes as f64 / pairs.metrics.shuffle_bytes as f64;
    println!(
        "compact {} bytes, pairs {} bytes, ratio {ratio:.4}",
        compact.metrics.shuffle_bytes, pairs.metrics.shuffle_bytes
    );
    assert!(
        ratio <= 0.3,
        "compact {} bytes vs pairs {} bytes",
        compact.metrics.shuffle_bytes,
        pairs.metrics.shuffle_bytes
    );
    assert!(
        compact
            .metrics
            .stages
            .iter()
            .any(|s| s.rules.iter().any(|r| r == "compact_distinct")),
        "{:?}",
        compact.metrics.stages
    );

    // APPROX_DISTINCT: DataFusion's sketch and estimate, registers re-encoded on the wire.
    let approx = "SELECT grp, approx_distinct(user_id) FROM events GROUP BY grp ORDER BY grp";
    let compact_sketch = run_with(&client, approx, &[]).await;
    let raw_sketch = run_with(&client, approx, &[("tally.compact_distinct", "false")]).await;
    let ctx = datafusion::prelude::SessionContext::new();
    ctx.register_parquet("events", table.to_str().unwrap(), Default::default())
        .await
        .unwrap();
    let expected_approx = ctx.sql(approx).await.unwrap().collect().await.unwrap();
    assert_same_results("approx", &expected_approx, &compact_sketch.batches, true);
    assert_same_results("approx raw", &expected_approx, &raw_sketch.batches, true);
    assert!(
        compact_sketch.metrics.shuffle_bytes < raw_sketch.metrics.shuffle_bytes,
        "compact sketches {} bytes, DataFusion's {} bytes",
        compact_sketch.metrics.shuffle_bytes,
        raw_sketch.metrics.shuffle_bytes
    );

    // The global distinct count and SUM(DISTINCT), through the same states.
    let total = run_with(
        &client,
        "SELECT count(DISTINCT user_id), sum(DISTINCT user_id) FROM events",
        &[],
    )
    .await;
    let batch = &total.batches[0];
    assert_eq!(batch.column(0).as_primitive::<Int64Type>().value(0), USERS);
    let sum: i64 = (0..USERS).map(|u| 5_000_000_000 + u).sum();
    assert_eq!(batch.column(1).as_primitive::<Int64Type>().value(0), sum);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn table_bucketed_by_the_distinct_column_ships_counts_not_values() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("events_b");
    write_bucketed(&table);
    let cluster = LocalCluster::start(3).await.unwrap();
    cluster
        .register_table("events", table.to_str().unwrap())
        .await
        .unwrap();
    let client = cluster.client().await.unwrap();
    let bucketed = run_with(&client, REACH, &[]).await;
    let sets = run_with(&client, REACH, &[("tally.bucketed_scans", "false")]).await;
    let expected = expected_counts();
    assert_eq!(counts(&bucketed), expected);
    assert_eq!(counts(&sets), expected);
    assert!(
        bucketed
            .metrics
            .stages
            .iter()
            .any(|s| s.rules.iter().any(|r| r == "bucketed_distinct")),
        "{:?}",
        bucketed.metrics.stages
    );
    // One count per group and worker instead of value sets.
    assert!(
        bucketed.metrics.shuffle_bytes * 20 < sets.metrics.shuffle_bytes,
        "bucketed {} bytes, value sets {} bytes",
        bucketed.metrics.shuffle_bytes,
        sets.metrics.shuffle_bytes
    );
    cluster.shutdown().await;
}
