//! Every check of a table as one aggregate query: one pass over the table, one distributed
//! job, whose partial aggregates run on the workers next to the data like any other job's.
//! Each check adds a few aggregates to the SELECT list (`q0`, `q1`, ...) and remembers where
//! they are; `results.rs` reads them back from the single answer row.
//!
//! | check | aggregates |
//! | --- | --- |
//! | (always) | `count(*)` |
//! | not_null(c) | `count(*) FILTER (WHERE c IS NULL)` |
//! | unique(k1, k2) | `count(DISTINCT struct(k1, k2))`: DataFusion 55 has no multi-argument `count(DISTINCT a, b)`; a struct with NULL fields is itself not NULL, so NULL keys count as equal values |
//! | accepted_values | `count(*) FILTER (WHERE c IS NOT NULL AND c NOT IN (...))` |
//! | range | `min(c)`, `max(c)`, `count(*) FILTER (WHERE c < min OR c > max)` |
//! | freshness | `to_unixtime(max(c))`, `CAST(max(c) AS VARCHAR)` |
//! | sql | `count(*) FILTER (WHERE (p) IS NOT TRUE)` |
//!
//! Identifiers are always double-quoted (with `"` doubled), so any column name works and
//! none is folded to lower case.

use super::expectations::{Check, Expectation};

/// A column or table name quoted for SQL.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The query and, per check (in order), the positions of its aggregates in the answer.
#[derive(Debug)]
pub struct CheckQuery {
    pub sql: String,
    pub positions: Vec<Vec<usize>>,
}

/// Position of `count(*)` in every check query.
pub const ROW_COUNT: usize = 0;

pub fn check_query(table: &str, checks: &[Check]) -> CheckQuery {
    let mut items = vec!["count(*)".to_string()];
    let mut positions = Vec::new();
    for check in checks {
        let start = items.len();
        items.extend(aggregates(&check.expectation));
        positions.push((start..items.len()).collect());
    }
    CheckQuery {
        sql: select(table, &items),
        positions,
    }
}

/// `SELECT a0 AS q0, a1 AS q1, ... FROM "table"`.
pub(crate) fn select(table: &str, items: &[String]) -> String {
    let list: Vec<String> = items
        .iter()
        .enumerate()
        .map(|(i, item)| format!("{item} AS q{i}"))
        .collect();
    format!("SELECT {} FROM {}", list.join(", "), quote_ident(table))
}

fn aggregates(expectation: &Expectation) -> Vec<String> {
    match expectation {
        Expectation::NotNull { column } => {
            vec![format!(
                "count(*) FILTER (WHERE {} IS NULL)",
                quote_ident(column)
            )]
        }
        Expectation::Unique { columns } => {
            let key: Vec<String> = columns.iter().map(|c| quote_ident(c)).collect();
            vec![format!("count(DISTINCT struct({}))", key.join(", "))]
        }
        Expectation::AcceptedValues { column, values } => {
            let c = quote_ident(column);
            let list: Vec<String> = values.iter().map(|v| v.to_sql()).collect();
            vec![format!(
                "count(*) FILTER (WHERE {c} IS NOT NULL AND {c} NOT IN ({}))",
                list.join(", ")
            )]
        }
        Expectation::Range { column, min, max } => {
            let c = quote_ident(column);
            let mut outside = Vec::new();
            if let Some(min) = min {
                outside.push(format!("{c} < {}", min.to_sql()));
            }
            if let Some(max) = max {
                outside.push(format!("{c} > {}", max.to_sql()));
            }
            vec![
                format!("min({c})"),
                format!("max({c})"),
                format!("count(*) FILTER (WHERE {})", outside.join(" OR ")),
            ]
        }
        Expectation::RowCount { .. } => Vec::new(),
        Expectation::Freshness { column, .. } => {
            let c = quote_ident(column);
            vec![
                format!("to_unixtime(max({c}))"),
                format!("CAST(max({c}) AS VARCHAR)"),
            ]
        }
        Expectation::Sql { predicate } => {
            vec![format!("count(*) FILTER (WHERE ({predicate}) IS NOT TRUE)")]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quality::expectations::parse_expectations;

    #[test]
    fn all_checks_are_one_select_with_quoted_names() {
        let checks = parse_expectations(
            r#"[{"not_null": ["Id"]}, {"unique": ["a", "b\"c"]}, {"row_count": {"min": 1}},
                {"range": {"column": "n", "min": 0, "max": "z"}},
                {"sql": {"name": "p", "predicate": "n > 0"}}]"#,
            "t",
        )
        .unwrap();
        let query = check_query("my table", &checks);
        assert_eq!(
            query.sql,
            "SELECT count(*) AS q0, count(*) FILTER (WHERE \"Id\" IS NULL) AS q1, \
             count(DISTINCT struct(\"a\", \"b\"\"c\")) AS q2, min(\"n\") AS q3, max(\"n\") AS q4, \
             count(*) FILTER (WHERE \"n\" < 0 OR \"n\" > 'z') AS q5, \
             count(*) FILTER (WHERE (n > 0) IS NOT TRUE) AS q6 FROM \"my table\""
        );
        assert_eq!(
            query.positions,
            vec![vec![1], vec![2], vec![], vec![3, 4, 5], vec![6]]
        );
    }
}
