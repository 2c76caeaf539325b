//! Prepared statements: their SQL and the parameters bound to them, by handle, until the
//! client closes them. They live in this coordinator's memory: a new leader does not know
//! them, and a client prepares again.

use std::collections::HashMap;
use std::sync::Mutex;

use arrow::array::RecordBatch;

use super::parameters;
use crate::error::CoordinatorError;

#[derive(Default)]
pub(super) struct PreparedStatements {
    by_handle: Mutex<HashMap<String, Prepared>>,
}

struct Prepared {
    sql: String,
    /// The bound values as SQL literals, once parameters were bound.
    literals: Vec<String>,
}

/// A client holding this many open prepared statements is leaking them.
const MAX_PREPARED: usize = 10_000;

impl PreparedStatements {
    /// Keeps `sql` and returns its handle.
    pub(super) fn prepare(&self, sql: &str) -> Result<String, CoordinatorError> {
        let mut statements = self.by_handle.lock().expect("prepared statements poisoned");
        if statements.len() >= MAX_PREPARED {
            return Err(CoordinatorError::Unavailable(format!(
                "{MAX_PREPARED} prepared statements are open: close some first"
            )));
        }
        let handle = uuid::Uuid::new_v4().simple().to_string();
        statements.insert(
            handle.clone(),
            Prepared {
                sql: sql.to_string(),
                literals: Vec::new(),
            },
        );
        Ok(handle)
    }

    /// Binds the first row of `batch` to the statement's parameters, in column order.
    pub(super) fn bind(&self, handle: &[u8], batch: &RecordBatch) -> Result<(), CoordinatorError> {
        let literals = parameters::literals(batch)?;
        let mut statements = self.by_handle.lock().expect("prepared statements poisoned");
        let prepared = statements
            .get_mut(handle_text(handle)?)
            .ok_or_else(|| unknown(handle))?;
        prepared.literals = literals;
        Ok(())
    }

    /// The statement's SQL with its bound values in place of its placeholders.
    pub(super) fn bound_sql(&self, handle: &[u8]) -> Result<String, CoordinatorError> {
        let statements = self.by_handle.lock().expect("prepared statements poisoned");
        let prepared = statements
            .get(handle_text(handle)?)
            .ok_or_else(|| unknown(handle))?;
        parameters::bind(&prepared.sql, &prepared.literals)
    }

    pub(super) fn close(&self, handle: &[u8]) -> Result<(), CoordinatorError> {
        let mut statements = self.by_handle.lock().expect("prepared statements poisoned");
        statements
            .remove(handle_text(handle)?)
            .map(|_| ())
            .ok_or_else(|| unknown(handle))
    }
}

fn handle_text(handle: &[u8]) -> Result<&str, CoordinatorError> {
    std::str::from_utf8(handle).map_err(|_| unknown(handle))
}

fn unknown(handle: &[u8]) -> CoordinatorError {
    CoordinatorError::NotFound(format!(
        "no prepared statement {:?} on this coordinator (closed, or prepared on another)",
        String::from_utf8_lossy(&handle[..handle.len().min(64)])
    ))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, Int64Array};

    use super::*;

    #[test]
    fn a_prepared_statement_binds_runs_again_with_new_values_and_closes() {
        let statements = PreparedStatements::default();
        let handle = statements.prepare("SELECT * FROM t WHERE k = $1").unwrap();
        let bound = |value: i64| {
            let column: ArrayRef = Arc::new(Int64Array::from(vec![value]));
            statements
                .bind(
                    handle.as_bytes(),
                    &RecordBatch::try_from_iter([("k", column)]).unwrap(),
                )
                .unwrap();
            statements.bound_sql(handle.as_bytes()).unwrap()
        };
        assert_eq!(bound(3), "SELECT * FROM t WHERE k = 3");
        assert_eq!(bound(4), "SELECT * FROM t WHERE k = 4");

        statements.close(handle.as_bytes()).unwrap();
        let err = statements.bound_sql(handle.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("no prepared statement"), "{err}");
    }
}
