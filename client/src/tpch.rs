//! TPC-H data generation (Parquet) and the 22 TPC-H queries.
//!
//! [`generate_tpch`] writes the 8 TPC-H tables with `tpchgen` / `tpchgen-arrow`
//! as `out/<table>/part-<i>.parquet`. The big tables are split into `parts`
//! files, each one a separate tpchgen part, so the output is deterministic
//! and the same for any machine, whatever the number of threads.
//!
//! Column names are the standard lowercase TPC-H names. Types follow
//! tpchgen-arrow: keys are `Int64`, sizes/quantities of partsupp/part/orders
//! are `Int32`, money and quantities are `Decimal128(15, 2)`, dates are
//! `Date32` and strings are `Utf8View`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::error::ArrowError;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::properties::WriterProperties;
use tally_common::bucketing::{BucketSpec, BucketedParquetWriter};
use tpchgen::generators::{
    CustomerGenerator, LineItemGenerator, NationGenerator, OrderGenerator, PartGenerator,
    PartSuppGenerator, RegionGenerator, SupplierGenerator,
};
use tpchgen_arrow::{
    CustomerArrow, LineItemArrow, NationArrow, OrderArrow, PartArrow, PartSuppArrow,
    RecordBatchIterator, RegionArrow, SupplierArrow,
};

/// The 8 TPC-H tables, in generation order.
pub const TPCH_TABLES: [&str; 8] = [
    "region", "nation", "supplier", "customer", "part", "partsupp", "orders", "lineitem",
];

/// The 22 TPC-H queries (validation parameters), as `(name, sql)`; each is
/// one SELECT statement without a trailing semicolon.
pub const TPCH_QUERIES: [(&str, &str); 22] = [
    ("q1", include_str!("../../tests/tpch/q1.sql")),
    ("q2", include_str!("../../tests/tpch/q2.sql")),
    ("q3", include_str!("../../tests/tpch/q3.sql")),
    ("q4", include_str!("../../tests/tpch/q4.sql")),
    ("q5", include_str!("../../tests/tpch/q5.sql")),
    ("q6", include_str!("../../tests/tpch/q6.sql")),
    ("q7", include_str!("../../tests/tpch/q7.sql")),
    ("q8", include_str!("../../tests/tpch/q8.sql")),
    ("q9", include_str!("../../tests/tpch/q9.sql")),
    ("q10", include_str!("../../tests/tpch/q10.sql")),
    ("q11", include_str!("../../tests/tpch/q11.sql")),
    ("q12", include_str!("../../tests/tpch/q12.sql")),
    ("q13", include_str!("../../tests/tpch/q13.sql")),
    ("q14", include_str!("../../tests/tpch/q14.sql")),
    ("q15", include_str!("../../tests/tpch/q15.sql")),
    ("q16", include_str!("../../tests/tpch/q16.sql")),
    ("q17", include_str!("../../tests/tpch/q17.sql")),
    ("q18", include_str!("../../tests/tpch/q18.sql")),
    ("q19", include_str!("../../tests/tpch/q19.sql")),
    ("q20", include_str!("../../tests/tpch/q20.sql")),
    ("q21", include_str!("../../tests/tpch/q21.sql")),
    ("q22", include_str!("../../tests/tpch/q22.sql")),
];

/// One table written by [`generate_tpch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedTable {
    /// Table name, e.g. `lineitem`.
    pub name: String,
    /// The table's folder, `out/<name>`.
    pub path: PathBuf,
    /// Total rows over all files.
    pub rows: u64,
    /// Number of Parquet files written.
    pub files: usize,
}

/// Errors of [`generate_tpch`].
#[derive(Debug, thiserror::Error)]
pub enum TpchGenError {
    #[error("bucketing {path}: {message}")]
    Bucketing { path: PathBuf, message: String },
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("Parquet error writing {path}: {source}")]
    Parquet {
        path: PathBuf,
        #[source]
        source: ParquetError,
    },
    #[error("Arrow error for {path}: {source}")]
    Arrow {
        path: PathBuf,
        #[source]
        source: ArrowError,
    },
    #[error("invalid TPC-H scale factor {scale} (must be finite and > 0) or part count {parts} (must be 1..={max}) for {path}", max = i32::MAX)]
    InvalidScale {
        scale: f64,
        parts: usize,
        path: PathBuf,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TpchGenError + '_ {
    move |source| TpchGenError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn parquet_err(path: &Path) -> impl FnOnce(ParquetError) -> TpchGenError + '_ {
    move |source| TpchGenError::Parquet {
        path: path.to_path_buf(),
        source,
    }
}

/// Generate the 8 TPC-H tables at `scale` into `out/<table>/part-<i>.parquet`.
///
/// region and nation are one file each; the other tables are `parts` files,
/// file `i` holding tpchgen part `i + 1` of `parts`. Existing
/// `part-*.parquet` files in the table folders are removed first so that a
/// folder never mixes two generations. At small scales some parts may be
/// empty (valid Parquet files with zero rows).
pub fn generate_tpch(
    scale: f64,
    out: &Path,
    parts: usize,
) -> Result<Vec<GeneratedTable>, TpchGenError> {
    generate_tpch_bucketed(scale, out, parts, &BTreeMap::new())
}

/// Like [`generate_tpch`], with the tables named in `bucketing` written as bucketed tables:
/// `bucket-<b>.parquet` files split by the hash of the bucket columns, plus the bucketing
/// record Tally's catalog reads.
pub fn generate_tpch_bucketed(
    scale: f64,
    out: &Path,
    parts: usize,
    bucketing: &BTreeMap<String, BucketSpec>,
) -> Result<Vec<GeneratedTable>, TpchGenError> {
    if let Some(unknown) = bucketing
        .keys()
        .find(|t| !TPCH_TABLES.contains(&t.as_str()))
    {
        return Err(TpchGenError::InvalidScale {
            scale,
            parts,
            path: out.join(unknown),
        });
    }
    let part_count = i32::try_from(parts).ok().filter(|p| *p >= 1);
    let part_count = match part_count {
        Some(p) if scale.is_finite() && scale > 0.0 => p,
        _ => {
            return Err(TpchGenError::InvalidScale {
                scale,
                parts,
                path: out.to_path_buf(),
            });
        }
    };

    let mut tables = Vec::with_capacity(TPCH_TABLES.len());
    for name in TPCH_TABLES {
        let dir = out.join(name);
        prepare_dir(&dir)?;
        let buckets = bucketing.get(name);
        let table = match name {
            "region" => write_table(&dir, name, 1, buckets, |p, n| {
                RegionArrow::new(RegionGenerator::new(scale, p, n))
            })?,
            "nation" => write_table(&dir, name, 1, buckets, |p, n| {
                NationArrow::new(NationGenerator::new(scale, p, n))
            })?,
            "supplier" => write_table(&dir, name, part_count, buckets, |p, n| {
                SupplierArrow::new(SupplierGenerator::new(scale, p, n))
            })?,
            "customer" => write_table(&dir, name, part_count, buckets, |p, n| {
                CustomerArrow::new(CustomerGenerator::new(scale, p, n))
            })?,
            "part" => write_table(&dir, name, part_count, buckets, |p, n| {
                PartArrow::new(PartGenerator::new(scale, p, n))
            })?,
            "partsupp" => write_table(&dir, name, part_count, buckets, |p, n| {
                PartSuppArrow::new(PartSuppGenerator::new(scale, p, n))
            })?,
            "orders" => write_table(&dir, name, part_count, buckets, |p, n| {
                OrderArrow::new(OrderGenerator::new(scale, p, n))
            })?,
            "lineitem" => write_table(&dir, name, part_count, buckets, |p, n| {
                LineItemArrow::new(LineItemGenerator::new(scale, p, n))
            })?,
            other => unreachable!("unknown TPC-H table {other}"),
        };
        tables.push(table);
    }
    Ok(tables)
}

/// All parts of one table, split into bucket files.
fn write_bucketed_table<I, F>(
    dir: &Path,
    name: &str,
    part_count: i32,
    spec: &BucketSpec,
    make: F,
) -> Result<GeneratedTable, TpchGenError>
where
    I: RecordBatchIterator,
    F: Fn(i32, i32) -> I,
{
    let bucket_err = |e: datafusion::error::DataFusionError| TpchGenError::Bucketing {
        path: dir.to_path_buf(),
        message: e.to_string(),
    };
    let mut writer: Option<BucketedParquetWriter> = None;
    let mut rows = 0u64;
    for part in 1..=part_count {
        let batches = make(part, part_count);
        if writer.is_none() {
            let schema = Arc::clone(batches.schema());
            writer = Some(
                BucketedParquetWriter::try_new(dir, schema, spec.clone()).map_err(bucket_err)?,
            );
        }
        let writer = writer.as_mut().expect("created above");
        for batch in batches {
            rows += batch.num_rows() as u64;
            writer.write(batch).map_err(bucket_err)?;
        }
    }
    if let Some(writer) = writer {
        writer.finish().map_err(bucket_err)?;
    }
    Ok(GeneratedTable {
        name: name.to_string(),
        path: dir.to_path_buf(),
        rows,
        files: spec.buckets,
    })
}

/// Create `dir` and remove stale data files and bucketing records from it.
fn prepare_dir(dir: &Path) -> Result<(), TpchGenError> {
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let file_name = entry.file_name();
        let file_name = file_name.to_string_lossy();
        let stale = (file_name.starts_with("part-") || file_name.starts_with("bucket-"))
            && file_name.ends_with(".parquet");
        if stale || file_name == tally_common::bucketing::METADATA_FILE {
            let path = entry.path();
            fs::remove_file(&path).map_err(io_err(&path))?;
        }
    }
    Ok(())
}

/// Write `part_count` files for one table; `make(part, part_count)` builds the
/// generator of 1-based tpchgen part `part`.
fn write_table<I, F>(
    dir: &Path,
    name: &str,
    part_count: i32,
    buckets: Option<&BucketSpec>,
    make: F,
) -> Result<GeneratedTable, TpchGenError>
where
    I: RecordBatchIterator,
    F: Fn(i32, i32) -> I,
{
    if let Some(spec) = buckets {
        return write_bucketed_table(dir, name, part_count, spec, make);
    }
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build();
    let mut rows = 0u64;
    for part in 1..=part_count {
        let path = dir.join(format!("part-{}.parquet", part - 1));
        // Write to a temporary name and rename, so that an interrupted run
        // never leaves a truncated file that looks like a finished part.
        let tmp = dir.join(format!(".part-{}.parquet.tmp", part - 1));
        let batches = make(part, part_count);
        let schema = Arc::clone(batches.schema());
        let file = fs::File::create(&tmp).map_err(io_err(&tmp))?;
        let mut writer =
            ArrowWriter::try_new(file, schema, Some(props.clone())).map_err(parquet_err(&tmp))?;
        for batch in batches {
            rows += batch.num_rows() as u64;
            writer.write(&batch).map_err(parquet_err(&tmp))?;
        }
        writer.close().map_err(parquet_err(&tmp))?;
        fs::rename(&tmp, &path).map_err(io_err(&path))?;
    }
    Ok(GeneratedTable {
        name: name.to_string(),
        path: dir.to_path_buf(),
        rows,
        files: part_count as usize,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::{ParquetReadOptions, SessionContext};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    fn parquet_files(dir: &Path) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
            .collect();
        files.sort();
        files
    }

    #[test]
    fn generates_eight_tables_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let tables = generate_tpch(0.001, dir.path(), 3).unwrap();
        assert_eq!(tables.len(), 8);
        for name in TPCH_TABLES {
            assert!(dir.path().join(name).is_dir(), "missing folder {name}");
        }
        let get = |name: &str| tables.iter().find(|t| t.name == name).unwrap();
        assert_eq!(get("nation").rows, 25);
        assert_eq!(get("nation").files, 1);
        assert_eq!(get("region").rows, 5);
        let lineitem = get("lineitem");
        assert!(lineitem.rows > 0);
        assert_eq!(lineitem.files, 3);

        let files = parquet_files(&lineitem.path);
        assert_eq!(files.len(), 3);
        let mut read_rows = 0u64;
        for file in files {
            let reader = ParquetRecordBatchReaderBuilder::try_new(fs::File::open(&file).unwrap())
                .unwrap()
                .build()
                .unwrap();
            for batch in reader {
                let batch = batch.unwrap();
                assert_eq!(batch.schema().field(0).name(), "l_orderkey");
                read_rows += batch.num_rows() as u64;
            }
        }
        assert_eq!(read_rows, lineitem.rows);

        // Regenerating with fewer parts leaves no stale files behind.
        let again = generate_tpch(0.001, dir.path(), 2).unwrap();
        assert_eq!(parquet_files(&dir.path().join("lineitem")).len(), 2);
        let lineitem_again = again.iter().find(|t| t.name == "lineitem").unwrap();
        assert_eq!(lineitem_again.rows, lineitem.rows);
    }

    #[test]
    fn rejects_bad_scale_and_parts() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            generate_tpch(0.0, dir.path(), 1),
            Err(TpchGenError::InvalidScale { .. })
        ));
        assert!(matches!(
            generate_tpch(f64::NAN, dir.path(), 1),
            Err(TpchGenError::InvalidScale { .. })
        ));
        assert!(matches!(
            generate_tpch(0.001, dir.path(), 0),
            Err(TpchGenError::InvalidScale { .. })
        ));
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn all_22_queries_plan_and_run_on_datafusion() {
        let dir = tempfile::tempdir().unwrap();
        generate_tpch(0.001, dir.path(), 2).unwrap();
        let ctx = SessionContext::new();
        for name in TPCH_TABLES {
            let path = format!("{}/", dir.path().join(name).display());
            ctx.register_parquet(name, &path, ParquetReadOptions::default())
                .await
                .unwrap();
        }
        for (name, sql) in TPCH_QUERIES {
            assert!(
                !sql.trim_end().ends_with(';'),
                "{name} has a trailing semicolon"
            );
            let df = ctx
                .sql(sql)
                .await
                .unwrap_or_else(|e| panic!("{name} failed to plan: {e}"));
            let batches = df
                .collect()
                .await
                .unwrap_or_else(|e| panic!("{name} failed to run: {e}"));
            let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
            if name == "q1" {
                assert_eq!(
                    rows, 4,
                    "q1 should return 4 (returnflag, linestatus) groups"
                );
            }
        }
    }
}
