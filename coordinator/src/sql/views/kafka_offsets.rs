//! A view over a Kafka topic covers offsets, not files: per partition, the first offset its
//! states do not hold yet. A refresh reads the records from there to the offsets fixed when
//! its job is planned, and the new offsets commit with the states in one manifest write, so
//! every record enters the view exactly once: a task run again reads the same fixed slice,
//! and a job that fails commits nothing.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode, TreeNodeRecursion};
use datafusion::physical_plan::ExecutionPlan;
use tally_common::kafka::{KafkaScanExec, OffsetRange, slices};
use tally_meta::CoveredOffset;

use crate::error::CoordinatorError;

/// What a refresh of a view over a topic reads.
pub(crate) struct KafkaRead {
    /// The source plan, its scan cut to the records not covered yet.
    pub plan: Arc<dyn ExecutionPlan>,
    /// The offsets the view covers once the refresh commits.
    pub covers: Vec<CoveredOffset>,
    pub records: u64,
}

/// The topic's offset ranges when `plan` (the view's source) scans a Kafka topic.
pub(crate) fn kafka_ranges(plan: &Arc<dyn ExecutionPlan>) -> Option<Vec<OffsetRange>> {
    let mut ranges = None;
    plan.apply(|node| {
        if let Some(scan) = node.downcast_ref::<KafkaScanExec>() {
            ranges = Some(scan.ranges());
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    })
    .expect("the walk cannot fail");
    ranges
}

/// Records the topic holds that the view has not read.
pub(crate) fn unread_records(ranges: &[OffsetRange], covered: &[CoveredOffset]) -> u64 {
    let next: BTreeMap<i32, i64> = covered.iter().map(|c| (c.partition, c.next)).collect();
    ranges
        .iter()
        .map(|r| {
            (r.end
                - next
                    .get(&r.partition)
                    .copied()
                    .unwrap_or(r.start)
                    .max(r.start))
            .max(0) as u64
        })
        .sum()
}

/// `plan` reading only the records after `covered` (it may read none).
pub(crate) fn records_after(
    view: &str,
    plan: Arc<dyn ExecutionPlan>,
    covered: &[CoveredOffset],
    max_records_per_task: u64,
) -> Result<KafkaRead, CoordinatorError> {
    let Some(ranges) = kafka_ranges(&plan) else {
        return Err(CoordinatorError::Internal(format!(
            "view {view}: its source plan has no Kafka scan"
        )));
    };
    let unread = unread_ranges(view, &ranges, covered)?;
    let records: u64 = unread.iter().map(OffsetRange::records).sum();
    let mut next: BTreeMap<i32, i64> = covered.iter().map(|c| (c.partition, c.next)).collect();
    for range in &ranges {
        next.insert(range.partition, range.end);
    }
    let cut = slices(&unread, max_records_per_task);
    let plan = plan
        .transform_up(|node| match node.downcast_ref::<KafkaScanExec>() {
            Some(scan) => Ok(Transformed::yes(
                Arc::new(scan.with_slices(cut.clone())?) as Arc<dyn ExecutionPlan>
            )),
            None => Ok(Transformed::no(node)),
        })
        .data()
        .map_err(CoordinatorError::from_datafusion)?;
    Ok(KafkaRead {
        plan,
        covers: next
            .into_iter()
            .map(|(partition, next)| CoveredOffset { partition, next })
            .collect(),
        records,
    })
}

/// Per partition, the records the topic holds now that the view has not read. Records the
/// broker deleted before the view read them, or offsets behind what the view read (a topic
/// deleted and made again), stop the refresh: the view could not be exact.
fn unread_ranges(
    view: &str,
    ranges: &[OffsetRange],
    covered: &[CoveredOffset],
) -> Result<Vec<OffsetRange>, CoordinatorError> {
    let next: BTreeMap<i32, i64> = covered.iter().map(|c| (c.partition, c.next)).collect();
    let mut unread = Vec::new();
    for range in ranges {
        let start = match next.get(&range.partition) {
            None => range.start,
            Some(&next) if next < range.start => {
                return Err(CoordinatorError::Query(format!(
                    "view {view}: records {next}..{} of partition {} were deleted from the topic \
                     before the view read them: REFRESH MATERIALIZED VIEW {view} FULL rebuilds it \
                     from the records the topic holds",
                    range.start, range.partition
                )));
            }
            Some(&next) if next > range.end => {
                return Err(CoordinatorError::Query(format!(
                    "view {view}: partition {} ends at offset {} but the view has read up to {next} \
                     (was the topic made again?): REFRESH MATERIALIZED VIEW {view} FULL",
                    range.partition, range.end
                )));
            }
            Some(&next) => next,
        };
        unread.push(OffsetRange {
            partition: range.partition,
            start,
            end: range.end,
        });
    }
    Ok(unread)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(partition: i32, start: i64, end: i64) -> OffsetRange {
        OffsetRange {
            partition,
            start,
            end,
        }
    }

    fn covered(partition: i32, next: i64) -> CoveredOffset {
        CoveredOffset { partition, next }
    }

    #[test]
    fn only_records_after_the_covered_offsets_are_read() {
        let ranges = [range(0, 0, 10), range(1, 5, 8), range(2, 0, 3)];
        let unread = unread_ranges("v", &ranges, &[covered(0, 4), covered(1, 8)]).unwrap();
        assert_eq!(
            unread,
            vec![range(0, 4, 10), range(1, 8, 8), range(2, 0, 3)]
        );
    }

    #[test]
    fn deleted_or_rewound_records_stop_the_refresh() {
        let deleted = unread_ranges("v", &[range(0, 5, 10)], &[covered(0, 3)]).unwrap_err();
        assert!(
            deleted
                .to_string()
                .contains("records 3..5 of partition 0 were deleted")
        );
        let rewound = unread_ranges("v", &[range(0, 0, 2)], &[covered(0, 3)]).unwrap_err();
        assert!(rewound.to_string().contains("FULL"));
    }
}
