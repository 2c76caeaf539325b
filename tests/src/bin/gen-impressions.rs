//! Writes the reach benchmark's `impressions` table: ROWS impressions (default 2,000,000) by
//! USERS users (default 200,000) as Parquet, in FILES files, and the same rows bucketed by
//! user_id into BUCKETS buckets. Deterministic.
//!
//!   gen-impressions OUT_DIR        # writes OUT_DIR/impressions and OUT_DIR/impressions_b

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Date32Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::parquet::arrow::ArrowWriter;
use tally_common::bucketing::{BucketSpec, BucketedParquetWriter};

const COUNTRIES: [&str; 20] = [
    "US", "DE", "FR", "GB", "JP", "BR", "IN", "IT", "ES", "CA", "MX", "KR", "AU", "NL", "SE", "PL",
    "TR", "AR", "ZA", "EG",
];
const DEVICES: [&str; 4] = ["mobile", "desktop", "tablet", "tv"];

fn mix(mut h: u64) -> u64 {
    h = h.wrapping_add(0x9e37_79b9_7f4a_7c15);
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("user_id", DataType::Int64, false),
        Field::new("country", DataType::Utf8, false),
        Field::new("device", DataType::Utf8, false),
        Field::new("campaign_id", DataType::Int64, false),
        Field::new("day", DataType::Date32, false),
    ]))
}

/// Impression `i`: a user (skewed towards low ids), mostly from the user's home country and
/// on one of the user's two devices.
fn batch(rows: std::ops::Range<u64>, users: u64) -> RecordBatch {
    let mut user_ids = Vec::new();
    let mut countries = Vec::new();
    let mut devices = Vec::new();
    let mut campaigns = Vec::new();
    let mut days = Vec::new();
    for i in rows {
        let h = mix(i);
        // Squaring a uniform draw skews towards low ids: some users see many impressions.
        let u = (h % 1_000_003) as f64 / 1_000_003.0;
        let user = ((u * u) * users as f64) as u64;
        let home = mix(user ^ 0xc0ffee);
        let country = if (h >> 20).is_multiple_of(20) {
            (h >> 40) as usize % COUNTRIES.len()
        } else {
            home as usize % COUNTRIES.len()
        };
        let device = (home >> 8) as usize % DEVICES.len() + ((h >> 33) % 2) as usize;
        user_ids.push(1_000_000_000 + user as i64);
        countries.push(COUNTRIES[country]);
        devices.push(DEVICES[device % DEVICES.len()]);
        campaigns.push(((h >> 12) % 100) as i64);
        days.push(19_700 + ((h >> 50) % 30) as i32);
    }
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(Int64Array::from(user_ids)),
            Arc::new(StringArray::from(countries)),
            Arc::new(StringArray::from(devices)),
            Arc::new(Int64Array::from(campaigns)),
            Arc::new(Date32Array::from(days)),
        ],
    )
    .expect("impressions batch")
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn chunks(rows: u64) -> impl Iterator<Item = std::ops::Range<u64>> {
    (0..rows)
        .step_by(65_536)
        .map(move |start| start..(start + 65_536).min(rows))
}

fn write_plain(dir: &Path, rows: u64, users: u64, files: u64) {
    std::fs::create_dir_all(dir).expect("create table folder");
    let per_file = rows.div_ceil(files);
    for file in 0..files {
        let out = std::fs::File::create(dir.join(format!("part-{file}.parquet"))).expect("file");
        let mut writer = ArrowWriter::try_new(out, schema(), None).expect("parquet writer");
        let (start, end) = (file * per_file, ((file + 1) * per_file).min(rows));
        for range in chunks(end - start) {
            let range = range.start + start..range.end + start;
            writer.write(&batch(range, users)).expect("write");
        }
        writer.close().expect("close");
    }
}

fn main() {
    let out = PathBuf::from(
        std::env::args()
            .nth(1)
            .expect("usage: gen-impressions OUT_DIR"),
    );
    let (rows, users) = (env("ROWS", 2_000_000), env("USERS", 200_000));
    write_plain(&out.join("impressions"), rows, users, env("FILES", 6));
    let spec = BucketSpec::new(vec!["user_id".to_string()], env("BUCKETS", 6) as usize)
        .expect("bucket spec");
    let mut writer = BucketedParquetWriter::try_new(&out.join("impressions_b"), schema(), spec)
        .expect("bucketed writer");
    for range in chunks(rows) {
        writer.write(batch(range, users)).expect("write");
    }
    writer.finish().expect("finish");
    println!("{rows} impressions by {users} users in {}", out.display());
}
