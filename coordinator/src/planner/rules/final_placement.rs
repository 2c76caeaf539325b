//! Final aggregation placement: when the merged partial aggregates hold few groups, the final
//! aggregation runs as one task that gathers one piece from each worker; otherwise it is
//! hash-partitioned on the group keys. Few pieces mean few Flight streams, each carrying its
//! own schema and batch headers.
//!
//! The combine stage decides when it starts, from the rows the partial stage produced (an
//! upper bound on the groups), and only when the final aggregation's stage reads nothing but
//! the combine's output: a join or union there needs the partition count it was planned with.

/// Gather the final aggregation when at most `max_groups` groups can reach it.
pub(crate) fn gather_final(max_groups: usize, partial_rows: u64, only_consumer: bool) -> bool {
    only_consumer && max_groups > 0 && partial_rows <= max_groups as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn few_groups_gather_many_groups_hash() {
        assert!(gather_final(100, 40, true));
        assert!(!gather_final(100, 400, true));
        assert!(!gather_final(0, 1, true), "0 turns the rule off");
        assert!(
            !gather_final(100, 40, false),
            "a join above needs its partitions"
        );
    }
}
