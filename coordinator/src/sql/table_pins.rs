//! Readers see a table partition's old files or its new ones, never a mix. Every query job
//! pins the tables it reads (a shared lock per table) from before its files are listed until
//! the job ends; a partition overwrite swaps its folder in under the table's exclusive lock.
//! So a query planned before the swap finishes on the old files (the swap waits for it), and
//! one planned after lists the new ones. The locks are fair: a waiting swap holds back new
//! readers, so it cannot starve. Readers take their locks in name order (deadlock-free: a
//! writer holds one lock only).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::logical_expr::LogicalPlan;
use tokio::sync::{OwnedRwLockReadGuard, OwnedRwLockWriteGuard, RwLock};

#[derive(Default)]
pub(crate) struct TablePins {
    locks: Mutex<HashMap<String, Arc<RwLock<()>>>>,
}

/// The pins a job holds; dropping it lets swaps of those tables go ahead.
pub(crate) struct Pinned(#[allow(dead_code)] Vec<OwnedRwLockReadGuard<()>>);

impl TablePins {
    fn lock(&self, table: &str) -> Arc<RwLock<()>> {
        self.locks
            .lock()
            .expect("table pins poisoned")
            .entry(table.to_string())
            .or_default()
            .clone()
    }

    /// Pins every table `plan` scans.
    pub(crate) async fn pin(&self, plan: &LogicalPlan) -> Pinned {
        let mut guards = Vec::new();
        for table in scanned_tables(plan).into_keys() {
            guards.push(self.lock(&table).read_owned().await);
        }
        Pinned(guards)
    }

    /// Waits until no job reads `table`, and keeps new readers out while held.
    pub(crate) async fn exclusive(&self, table: &str) -> OwnedRwLockWriteGuard<()> {
        self.lock(table).write_owned().await
    }
}

/// The tables a plan scans (subqueries included) with their schemas, in name order (the
/// order readers lock them in).
pub(crate) fn scanned_tables(plan: &LogicalPlan) -> BTreeMap<String, SchemaRef> {
    let mut tables = BTreeMap::new();
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            tables
                .entry(scan.table_name.table().to_string())
                .or_insert_with(|| scan.source.schema());
        }
        Ok(TreeNodeRecursion::Continue)
    });
    tables
}
