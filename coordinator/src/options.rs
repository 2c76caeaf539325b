//! Tally's planner settings: the `tally.*` namespace of the session configuration, so
//! `SET tally.worker_combine = false` (or `--set`) works like any DataFusion setting.

use datafusion::common::extensions_options;
use datafusion::config::{ConfigExtension, ConfigOptions};
use tally_common::compression::WireCompression;

extensions_options! {
    /// Which shuffle-minimizing rules the distributed planner applies.
    pub struct TallyOptions {
        /// `minimized` (every rule as configured below) or `naive` (every rule off: raw
        /// rows hash-shuffled for every join and aggregation, no compression).
        pub planner: String, default = "minimized".to_string()
        /// Partial aggregation before every exchange, never skipped at run time.
        pub partial_aggregation: bool, default = true
        /// Merge the partial aggregates of all tasks on a worker before they leave it.
        pub worker_combine: bool, default = true
        /// Combine only when the partial aggregation reduced its input at least this many
        /// times (rows in / groups out); below that, groups are about as many as rows.
        pub worker_combine_min_reduction: f64, default = 2.0
        /// Gather the final aggregation into one task when it has at most this many groups
        /// (0 turns the rule off); otherwise hash-partition it on the group keys.
        pub final_gather_max_groups: usize, default = 10_000
        /// Broadcast the smaller side of a join when its estimated size is at most this many
        /// bytes (0 turns broadcast joins off); it crosses the network once per worker.
        pub broadcast_threshold_bytes: usize, default = 10 * 1024 * 1024
        /// Run joins and aggregations on bucketed tables' bucket keys without an exchange.
        pub bucketed_scans: bool, default = true
        /// Arrow IPC body compression on the wire: `lz4`, `zstd` or `none`.
        pub compression: String, default = "lz4".to_string()
        /// COUNT(DISTINCT) and SUM(DISTINCT) with compact value-set partial states (counts
        /// only, when the input is bucketed by the distinct column).
        pub compact_distinct: bool, default = true
        /// Use compact value sets only when the input has at least this many rows per
        /// estimated group (groups unknown: use them).
        pub compact_distinct_min_rows_per_group: f64, default = 2.0
        /// Push partial aggregates below inner joins where that is correct.
        pub eager_aggregation: bool, default = true
        /// Push a partial aggregate below a join only when it is estimated to reduce the
        /// rows of that join input at least this many times.
        pub eager_aggregation_min_reduction: f64, default = 2.0
        /// Answer aggregations over a materialized view's source from the view's stored
        /// states when the view covers every current input and can answer the query.
        pub view_rewrite: bool, default = true
        /// Most bytes one scan task reads: large files are split along row groups (byte
        /// ranges), small files packed together; like Spark's 128 MiB. Applies in both
        /// planners; bucketed tables keep one task per bucket.
        pub split_bytes: usize, default = 128 * 1024 * 1024
        /// Most records of a Kafka topic partition one scan task reads: a partition with
        /// more is read by several tasks, each a slice of its offsets.
        pub kafka_max_records_per_task: u64, default = 1_000_000
        /// The SQL dialect of the job's statements: `datafusion` (DataFusion's semantics)
        /// or `spark` (Spark SQL's parser, functions, NULL ordering and division).
        pub sql_dialect: String, default = "datafusion".to_string()
        /// Which partitions `INSERT OVERWRITE` with dynamic partition columns replaces:
        /// `dynamic` (those the query writes rows into, as Hive does) or `static` (every
        /// partition under the statement's static values, Spark's default).
        pub partition_overwrite_mode: String, default = "dynamic".to_string()
    }
}

impl ConfigExtension for TallyOptions {
    const PREFIX: &'static str = "tally";
}

/// `tally.kafka_max_records_per_task` of a session.
pub(crate) fn kafka_max_records_per_task(options: &ConfigOptions) -> u64 {
    options
        .extensions
        .get::<TallyOptions>()
        .map_or(TallyOptions::default().kafka_max_records_per_task, |o| {
            o.kafka_max_records_per_task
        })
}

/// `tally.sql_dialect` of a session.
pub(crate) fn sql_dialect(options: &ConfigOptions) -> String {
    options.extensions.get::<TallyOptions>().map_or_else(
        || TallyOptions::default().sql_dialect,
        |o| o.sql_dialect.clone(),
    )
}

/// `tally.partition_overwrite_mode` of a session.
pub(crate) fn partition_overwrite_mode(options: &ConfigOptions) -> String {
    options.extensions.get::<TallyOptions>().map_or_else(
        || TallyOptions::default().partition_overwrite_mode,
        |o| o.partition_overwrite_mode.clone(),
    )
}

/// The rules in force for one job, after `tally.planner = naive` has had its say.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Rules {
    pub partial_aggregation: bool,
    pub worker_combine: bool,
    pub worker_combine_min_reduction: f64,
    pub final_gather_max_groups: usize,
    pub broadcast_threshold_bytes: usize,
    pub bucketed_scans: bool,
    pub compression: WireCompression,
    pub compact_distinct: bool,
    pub compact_distinct_min_rows_per_group: f64,
    pub eager_aggregation: bool,
    pub eager_aggregation_min_reduction: f64,
    pub view_rewrite: bool,
}

impl Rules {
    pub(crate) fn from_config(options: &ConfigOptions) -> Result<Self, String> {
        let tally = options
            .extensions
            .get::<TallyOptions>()
            .cloned()
            .unwrap_or_default();
        if tally.split_bytes == 0 {
            return Err("tally.split_bytes = 0: a scan task needs at least 1 byte".to_string());
        }
        match tally.planner.to_ascii_lowercase().as_str() {
            "naive" => Ok(Self::naive()),
            "minimized" | "" => Ok(Self {
                partial_aggregation: tally.partial_aggregation,
                worker_combine: tally.worker_combine && tally.partial_aggregation,
                worker_combine_min_reduction: tally.worker_combine_min_reduction,
                final_gather_max_groups: tally.final_gather_max_groups,
                broadcast_threshold_bytes: tally.broadcast_threshold_bytes,
                bucketed_scans: tally.bucketed_scans,
                compression: WireCompression::parse(&tally.compression)
                    .map_err(|e| format!("tally.{e}"))?,
                compact_distinct: tally.compact_distinct,
                compact_distinct_min_rows_per_group: tally.compact_distinct_min_rows_per_group,
                eager_aggregation: tally.eager_aggregation && tally.partial_aggregation,
                eager_aggregation_min_reduction: tally.eager_aggregation_min_reduction,
                view_rewrite: tally.view_rewrite,
            }),
            other => Err(format!("tally.planner = {other}: use minimized or naive")),
        }
    }

    pub(crate) fn naive() -> Self {
        Self {
            partial_aggregation: false,
            worker_combine: false,
            worker_combine_min_reduction: f64::INFINITY,
            final_gather_max_groups: 0,
            broadcast_threshold_bytes: 0,
            bucketed_scans: false,
            compression: WireCompression::None,
            compact_distinct: false,
            compact_distinct_min_rows_per_group: f64::INFINITY,
            eager_aggregation: false,
            eager_aggregation_min_reduction: f64::INFINITY,
            view_rewrite: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(settings: &[(&str, &str)]) -> Result<Rules, String> {
        let mut options = ConfigOptions::default();
        options.extensions.insert(TallyOptions::default());
        for (key, value) in settings {
            options.set(key, value).map_err(|e| e.to_string())?;
        }
        Rules::from_config(&options)
    }

    #[test]
    fn naive_planner_turns_every_rule_off() {
        assert_eq!(
            rules(&[("tally.planner", "naive")]).unwrap(),
            Rules::naive()
        );
    }

    #[test]
    fn each_rule_can_be_switched_off() {
        let rules = rules(&[
            ("tally.worker_combine", "false"),
            ("tally.compression", "none"),
            ("tally.compact_distinct", "false"),
            ("tally.eager_aggregation", "false"),
        ])
        .unwrap();
        assert!(!rules.worker_combine);
        assert!(!rules.compact_distinct);
        assert!(!rules.eager_aggregation);
        assert!(rules.partial_aggregation);
        assert_eq!(rules.compression, WireCompression::None);
    }

    #[test]
    fn bad_values_are_refused_with_the_setting_named() {
        assert!(
            rules(&[("tally.planner", "fast")])
                .unwrap_err()
                .contains("tally.planner")
        );
        assert!(
            rules(&[("tally.compression", "gzip")])
                .unwrap_err()
                .contains("tally.compression")
        );
        assert!(
            rules(&[("tally.split_bytes", "0")])
                .unwrap_err()
                .contains("tally.split_bytes")
        );
        assert!(rules(&[("tally.no_such_rule", "1")]).is_err());
    }
}
