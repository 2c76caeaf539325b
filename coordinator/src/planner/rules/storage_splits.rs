//! Scan splits sized to the storage. A scan task reads about `split` bytes, however its
//! table is cut into files: a large file becomes several tasks, each reading a byte range,
//! and many small files are packed into one task. The rewrite regroups a file scan's files
//! into groups of about `split` bytes, one task each, with
//!
//! `split = min(tally.split_bytes, max(datafusion.optimizer.repartition_file_min_size,
//!              total / target_partitions))`:
//!
//! at most `tally.split_bytes` (128 MiB, as Spark's `maxPartitionBytes`), smaller when that
//! leaves some of the cluster's partitions without work (Spark's bytes per core), but not
//! below DataFusion's own threshold for splitting a scan (1 MiB): a small table is one task.
//!
//! When a file is larger than a split, DataFusion's `FileGroupPartitioner` cuts the scan into
//! `ceil(total / split)` byte ranges of equal size; otherwise the files stay whole, packed in
//! path order into groups of at most `split` bytes. Correct because DataFusion's readers
//! honour byte ranges exactly once: a Parquet reader reads the row groups whose first page
//! starts in its range, so ranges fall on row-group boundaries; a CSV or JSON reader reads
//! the lines that start in its range. Files that cannot be cut (compressed, or CSV whose
//! values may hold newlines) are packed whole. The rewrite runs as the first physical
//! optimizer rule of a job's session, so DataFusion's own rules then place the exchanges and
//! merges that the new partition counts need.
//!
//! A scan's order (declared `WITH ORDER`, or read from its Parquet files' sorting columns)
//! holds while each task reads one file or a range of it; a task packing several files drops
//! it, and DataFusion sorts where a query needs it. Left as planned: scans that declare their
//! partitioning (bucketed tables run one task per bucket, which their joins and aggregations
//! rely on).

use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode, TreeNodeRecursion};
use datafusion::config::ConfigOptions;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfig};
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::Result;
use datafusion::execution::SessionState;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;

use crate::options::TallyOptions;

/// `state` with the split rule run before DataFusion's physical optimizer rules.
pub(crate) fn plan_scans_by_bytes(state: SessionState) -> SessionState {
    let mut rules: Vec<Arc<dyn PhysicalOptimizerRule + Send + Sync>> =
        vec![Arc::new(StorageSplits)];
    rules.extend(state.physical_optimizers().iter().cloned());
    SessionStateBuilder::new_from_existing(state)
        .with_physical_optimizer_rules(rules)
        .build()
}

/// The rule's name among the session's physical optimizer rules.
pub(crate) const STORAGE_SPLITS: &str = "tally_storage_splits";

#[derive(Debug)]
struct StorageSplits;

impl PhysicalOptimizerRule for StorageSplits {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        split_scans(plan, &SplitSizing::from_config(config))
    }

    fn name(&self) -> &str {
        STORAGE_SPLITS
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// How many bytes one scan task reads, from a job's settings.
#[derive(Debug, Clone, Copy)]
struct SplitSizing {
    /// `tally.split_bytes`.
    max_bytes: u64,
    /// `datafusion.optimizer.repartition_file_min_size`.
    min_bytes: u64,
    /// `datafusion.execution.target_partitions`: the tasks the cluster runs at once.
    partitions: u64,
}

impl SplitSizing {
    fn from_config(config: &ConfigOptions) -> Self {
        let tally = config
            .extensions
            .get::<TallyOptions>()
            .cloned()
            .unwrap_or_default();
        Self {
            max_bytes: tally.split_bytes as u64,
            min_bytes: config.optimizer.repartition_file_min_size as u64,
            partitions: config.execution.target_partitions as u64,
        }
    }

    /// The bytes one task of a scan of `total` bytes reads.
    fn split_bytes(&self, total: u64) -> u64 {
        let per_partition = total.div_ceil(self.partitions.max(1));
        per_partition.max(self.min_bytes).min(self.max_bytes).max(1)
    }

    /// How many tasks read `total` bytes.
    fn splits(&self, total: u64) -> usize {
        total.div_ceil(self.split_bytes(total)).max(1) as usize
    }
}

/// Regroups every file scan of `plan` but bucketed ones as `sizing` says.
fn split_scans(
    plan: Arc<dyn ExecutionPlan>,
    sizing: &SplitSizing,
) -> Result<Arc<dyn ExecutionPlan>> {
    plan.transform_up(|node| {
        Ok(match split_scan(&node, sizing)? {
            Some(split) => Transformed::yes(split),
            None => Transformed::no(node),
        })
    })
    .data()
}

fn split_scan(
    node: &Arc<dyn ExecutionPlan>,
    sizing: &SplitSizing,
) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    let Some(exec) = node.downcast_ref::<DataSourceExec>() else {
        return Ok(None);
    };
    let Some(config) = exec.data_source().downcast_ref::<FileScanConfig>() else {
        return Ok(None);
    };
    if config.output_partitioning.is_some() {
        return Ok(None);
    }
    let total = scan_bytes(config);
    if total == 0 {
        return Ok(None);
    }
    let split = sizing.split_bytes(total);
    let files = || config.file_groups.iter().flat_map(FileGroup::iter);
    // None when the format cannot be cut.
    let ranged = if files().any(|file| file.effective_size() > split) {
        let splits = sizing.splits(total);
        config.file_source.repartitioned(splits, 0, None, config)?
    } else {
        None
    };
    let mut regrouped = ranged.unwrap_or_else(|| {
        let mut packed = config.clone();
        packed.file_groups = pack_whole_files(files(), split);
        packed
    });
    // A task reading one file, or a range of it, keeps the file's order; one reading several
    // does not, so the scan stops claiming an order and DataFusion sorts where it must.
    let one_file_per_task = regrouped.file_groups.iter().all(|group| {
        group
            .iter()
            .all(|file| file.path() == group.files()[0].path())
    });
    if !one_file_per_task {
        regrouped.output_ordering.clear();
    }
    let exec = exec.clone().with_data_source(Arc::new(regrouped));
    Ok(Some(Arc::new(exec)))
}

/// The bytes a scan reads: its files, or their ranges.
fn scan_bytes(config: &FileScanConfig) -> u64 {
    config
        .file_groups
        .iter()
        .flat_map(FileGroup::iter)
        .map(|file| file.effective_size())
        .sum()
}

/// Files in path order, a new group whenever the next file would take the current one past
/// `target` bytes.
fn pack_whole_files<'a>(
    files: impl Iterator<Item = &'a PartitionedFile>,
    target: u64,
) -> Vec<FileGroup> {
    let mut files: Vec<_> = files.cloned().collect();
    files.sort_by(|a, b| a.path().cmp(b.path()));
    let mut packed: Vec<FileGroup> = Vec::new();
    let mut bytes = 0;
    for file in files {
        let size = file.effective_size();
        match packed.last_mut() {
            Some(group) if bytes + size <= target => {
                group.push(file);
                bytes += size;
            }
            _ => {
                packed.push(FileGroup::new(vec![file]));
                bytes = size;
            }
        }
    }
    packed
}

/// What EXPLAIN notes on a stage: the splits of each file scan in it and the bytes they read.
pub(crate) fn stage_notes(plan: &Arc<dyn ExecutionPlan>) -> Vec<String> {
    let mut notes = Vec::new();
    plan.apply(|node| {
        if let Some(config) = node
            .downcast_ref::<DataSourceExec>()
            .and_then(|exec| exec.data_source().downcast_ref::<FileScanConfig>())
        {
            let mut files: Vec<_> = config
                .file_groups
                .iter()
                .flat_map(FileGroup::iter)
                .map(|file| file.path())
                .collect();
            files.sort();
            files.dedup();
            notes.push(format!(
                "splits={} bytes={} files={}",
                config.file_groups.len(),
                scan_bytes(config),
                files.len()
            ));
        }
        Ok(TreeNodeRecursion::Continue)
    })
    .expect("the walk cannot fail");
    notes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::planner::test_support::{Tables, nodes, shown};
    use datafusion::arrow::array::RecordBatch;
    use datafusion::physical_expr::Partitioning;
    use datafusion::physical_plan::collect_partitioned;

    const EVENTS: &str = "SELECT value AS k, value % 7 AS g, concat('item-', value) AS s \
                          FROM generate_series(1, 12000)";
    const REPORT: &str = "SELECT g, count(*), sum(k), min(s), max(s) FROM events \
                          GROUP BY g ORDER BY g";

    fn scan_partitions(plan: &Arc<dyn ExecutionPlan>) -> Vec<usize> {
        nodes(plan, |scan: &DataSourceExec| {
            scan.properties().output_partitioning().partition_count()
        })
    }

    /// The rows each partition of `sql`'s only scan reads, in a job's session with `settings`.
    async fn rows_per_split(tables: &Tables, sql: &str, settings: &[(&str, &str)]) -> Vec<usize> {
        let (plan, task_ctx) = tables.job_plan(sql, settings).await;
        let mut scan = None;
        plan.apply(|node| {
            if node.is::<DataSourceExec>() {
                scan = Some(node.clone());
            }
            Ok(TreeNodeRecursion::Continue)
        })
        .unwrap();
        let partitions = collect_partitioned(scan.expect("a scan"), task_ctx)
            .await
            .unwrap();
        partitions
            .iter()
            .map(|batches| batches.iter().map(RecordBatch::num_rows).sum())
            .collect()
    }

    /// What the job's plan of `sql` answers, against single-node DataFusion's answer.
    async fn answers(tables: &Tables, sql: &str, settings: &[(&str, &str)]) -> (String, String) {
        let (plan, task_ctx) = tables.job_plan(sql, settings).await;
        let batches = datafusion::physical_plan::collect(plan, task_ctx)
            .await
            .unwrap();
        let split = datafusion::arrow::util::pretty::pretty_format_batches(&batches)
            .unwrap()
            .to_string();
        (split, tables.answer(tables.physical(sql).await).await)
    }

    #[test]
    fn splits_shrink_to_give_every_partition_work_but_not_below_the_minimum() {
        const MIB: u64 = 1024 * 1024;
        let sizing = SplitSizing {
            max_bytes: 128 * MIB,
            min_bytes: MIB,
            partitions: 6,
        };
        assert_eq!(sizing.splits(1024 * MIB), 8, "at most 128 MiB a task");
        assert_eq!(
            sizing.splits(300 * MIB),
            6,
            "50 MiB each keeps 6 partitions busy"
        );
        assert_eq!(sizing.splits(3 * MIB), 3, "but no split under 1 MiB");
        assert_eq!(sizing.splits(1000), 1);
        let small = SplitSizing {
            max_bytes: 100,
            ..sizing
        };
        assert_eq!(
            small.splits(1000),
            10,
            "a split_bytes below the minimum wins"
        );
    }

    #[tokio::test]
    async fn a_file_of_twelve_row_groups_splits_along_its_row_groups() {
        let tables = Tables::new(&[], 0, 0).await;
        let bytes = tables.add_parquet_file("events", EVENTS, 1000).await;
        let small = (bytes.div_ceil(4)).to_string();
        let settings = [("tally.split_bytes", small.as_str())];

        let (plan, _) = tables.job_plan(REPORT, &settings).await;
        assert_eq!(scan_partitions(&plan), vec![4], "{}", shown(&plan));
        let rows = rows_per_split(&tables, "SELECT * FROM events", &settings).await;
        assert_eq!(rows.iter().sum::<usize>(), 12000, "{rows:?}");
        assert!(
            rows.iter().all(|r| *r > 0 && r % 1000 == 0),
            "each split reads whole row groups: {rows:?}"
        );
        let (split, expected) = answers(&tables, REPORT, &settings).await;
        assert_eq!(split, expected);

        let (plan, _) = tables.job_plan(REPORT, &[]).await;
        assert_eq!(scan_partitions(&plan), vec![1], "a small file is one task");
    }

    #[tokio::test]
    async fn many_small_files_are_packed_whole_into_few_tasks() {
        let tiny = (
            "tiny",
            "SELECT value AS k, value % 3 AS g FROM generate_series({lo}, {hi})",
        );
        let tables = Tables::new(&[tiny], 200, 5).await;
        let sql = "SELECT g, count(*), sum(k) FROM tiny GROUP BY g ORDER BY g";
        let (plan, _) = tables.job_plan(sql, &[]).await;
        assert_eq!(scan_partitions(&plan), vec![1], "{}", shown(&plan));
        let (split, expected) = answers(&tables, sql, &[]).await;
        assert_eq!(split, expected);

        // A quarter of the bytes each: about 50 whole files a task, none cut.
        let (plan, _) = tables.job_plan("SELECT * FROM tiny", &[]).await;
        let config = |scan: &DataSourceExec| {
            scan.data_source()
                .downcast_ref::<FileScanConfig>()
                .unwrap()
                .clone()
        };
        let total = scan_bytes(&nodes(&plan, config)[0]);
        let quarter = total.div_ceil(4).to_string();
        let settings = [("tally.split_bytes", quarter.as_str())];
        let (plan, _) = tables.job_plan("SELECT * FROM tiny", &settings).await;
        let packed = nodes(&plan, config).remove(0);
        assert!(
            (4..=5).contains(&packed.file_groups.len()),
            "{}",
            shown(&plan)
        );
        let files: Vec<_> = packed
            .file_groups
            .iter()
            .flat_map(FileGroup::iter)
            .collect();
        assert_eq!(files.len(), 200);
        assert!(files.iter().all(|f| f.range.is_none()), "no file is cut");
        let (split, expected) = answers(&tables, sql, &settings).await;
        assert_eq!(split, expected);
    }

    #[tokio::test]
    async fn a_csv_file_splits_by_lines_with_its_header_read_once() {
        let tables = Tables::new(&[], 0, 0).await;
        let bytes = tables.add_csv_file("events", EVENTS).await;
        let small = (bytes.div_ceil(4)).to_string();
        let settings = [("tally.split_bytes", small.as_str())];
        let rows = rows_per_split(&tables, "SELECT * FROM events", &settings).await;
        assert_eq!(rows.len(), 4);
        assert!(rows.iter().all(|r| *r > 0), "{rows:?}");
        assert_eq!(rows.iter().sum::<usize>(), 12000, "{rows:?}");
        let (split, expected) = answers(&tables, REPORT, &settings).await;
        assert_eq!(split, expected);
    }

    #[tokio::test]
    async fn an_ordered_file_split_into_ranges_keeps_its_order() {
        let tables = Tables::new(&[], 0, 0).await;
        let bytes = tables.add_parquet_file("events", EVENTS, 1000).await;
        let path = tables.dir().join("events.parquet");
        tables
            .ctx
            .sql(&format!(
                "CREATE EXTERNAL TABLE ordered STORED AS PARQUET WITH ORDER (k ASC) \
                 LOCATION '{}'",
                path.display()
            ))
            .await
            .unwrap();
        let quarter = bytes.div_ceil(4).to_string();
        let settings = [("tally.split_bytes", quarter.as_str())];
        let sql = "SELECT k, s FROM ordered ORDER BY k LIMIT 5";
        let (plan, _) = tables.job_plan(sql, &settings).await;
        let scans = nodes(&plan, |scan: &DataSourceExec| {
            let properties = scan.properties();
            (
                properties.output_partitioning().partition_count(),
                properties.output_ordering().is_some(),
            )
        });
        assert_eq!(scans, vec![(4, true)], "{}", shown(&plan));
        let (split, expected) = answers(&tables, sql, &settings).await;
        assert_eq!(split, expected);
    }

    #[tokio::test]
    async fn rule_does_not_fire_where_it_would_be_wrong_bucketed_scans() {
        let tables = Tables::new(&[], 0, 0).await;
        tables.add_bucketed("b", EVENTS, &["k"], 4).await;
        let tiny = [("tally.split_bytes", "1")];
        let (plan, _) = tables.job_plan("SELECT * FROM b", &tiny).await;
        let partitioning = nodes(&plan, |scan: &DataSourceExec| {
            scan.properties().output_partitioning().clone()
        });
        assert!(
            matches!(partitioning.as_slice(), [Partitioning::Hash(_, 4)]),
            "one task per bucket: {}",
            shown(&plan)
        );
    }
}
