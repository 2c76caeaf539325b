//! Comparing query results from two engines (e.g. single-process DataFusion
//! against a Tally cluster).

use std::fmt;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Float16Type, Float32Type, Float64Type};
use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};

/// Relative tolerance for floating point cells.
const FLOAT_REL_TOL: f64 = 1e-9;
/// Absolute tolerance for floating point cells near zero.
const FLOAT_ABS_TOL: f64 = 1e-12;

/// One rendered cell.
#[derive(Debug, Clone)]
enum Cell {
    Null,
    /// Float16/32/64, compared with a tolerance.
    Float(f64),
    /// Any other type, rendered by arrow's display formatter, compared exactly.
    Text(String),
}

impl Cell {
    /// Text used to sort rows of unordered results: floats are rounded so
    /// that values within tolerance of each other almost always sort alike.
    fn sort_key(&self) -> String {
        match self {
            Cell::Null => "\u{0}NULL".to_string(),
            Cell::Float(v) if v.is_nan() => "NaN".to_string(),
            Cell::Float(v) if v.abs() < FLOAT_ABS_TOL => format!("{:.8e}", 0.0),
            Cell::Float(v) => format!("{v:.8e}"),
            Cell::Text(s) => s.clone(),
        }
    }

    fn matches(&self, other: &Cell) -> bool {
        match (self, other) {
            (Cell::Null, Cell::Null) => true,
            (Cell::Float(a), Cell::Float(b)) => floats_match(*a, *b),
            (Cell::Text(a), Cell::Text(b)) => a == b,
            _ => false,
        }
    }
}

impl fmt::Display for Cell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cell::Null => f.write_str("NULL"),
            Cell::Float(v) => write!(f, "{v:?}"),
            Cell::Text(s) => write!(f, "{s:?}"),
        }
    }
}

fn floats_match(a: f64, b: f64) -> bool {
    if a.is_nan() || b.is_nan() {
        return a.is_nan() && b.is_nan();
    }
    if a == b {
        // Also covers equal infinities.
        return true;
    }
    if a.is_infinite() || b.is_infinite() {
        return false;
    }
    let diff = (a - b).abs();
    diff <= FLOAT_ABS_TOL || diff <= FLOAT_REL_TOL * a.abs().max(b.abs())
}

type Row = Vec<Cell>;

/// Render all rows of `batches` into cells.
fn rows_of(query: &str, side: &str, batches: &[RecordBatch]) -> Vec<Row> {
    let options = FormatOptions::default().with_null("NULL");
    let mut rows = Vec::new();
    for batch in batches {
        let mut columns: Vec<Vec<Cell>> = Vec::with_capacity(batch.num_columns());
        for column in batch.columns() {
            let column = column.as_ref();
            let cells: Vec<Cell> = match column.data_type() {
                DataType::Float16 => {
                    let a = column.as_primitive::<Float16Type>();
                    (0..a.len())
                        .map(|i| {
                            if a.is_null(i) {
                                Cell::Null
                            } else {
                                Cell::Float(a.value(i).to_f64())
                            }
                        })
                        .collect()
                }
                DataType::Float32 => {
                    let a = column.as_primitive::<Float32Type>();
                    (0..a.len())
                        .map(|i| {
                            if a.is_null(i) {
                                Cell::Null
                            } else {
                                Cell::Float(f64::from(a.value(i)))
                            }
                        })
                        .collect()
                }
                DataType::Float64 => {
                    let a = column.as_primitive::<Float64Type>();
                    (0..a.len())
                        .map(|i| {
                            if a.is_null(i) {
                                Cell::Null
                            } else {
                                Cell::Float(a.value(i))
                            }
                        })
                        .collect()
                }
                _ => {
                    let formatter = ArrayFormatter::try_new(column, &options).unwrap_or_else(|e| {
                        panic!(
                            "query {query}: cannot render {side} column of type {}: {e}",
                            column.data_type()
                        )
                    });
                    (0..column.len())
                        .map(|i| {
                            if column.is_null(i) {
                                Cell::Null
                            } else {
                                Cell::Text(formatter.value(i).try_to_string().unwrap_or_else(|e| {
                                    panic!(
                                        "query {query}: cannot render {side} value at row {i}: {e}"
                                    )
                                }))
                            }
                        })
                        .collect()
                }
            };
            columns.push(cells);
        }
        for i in 0..batch.num_rows() {
            rows.push(columns.iter().map(|c| c[i].clone()).collect());
        }
    }
    rows
}

fn render_row(row: &Row) -> String {
    let cells: Vec<String> = row.iter().map(|c| c.to_string()).collect();
    format!("[{}]", cells.join(", "))
}

fn sort_rows(rows: &mut [Row]) {
    let mut keyed: Vec<(Vec<String>, Row)> = rows
        .iter()
        .map(|r| (r.iter().map(Cell::sort_key).collect(), r.clone()))
        .collect();
    keyed.sort_by(|a, b| a.0.cmp(&b.0));
    for (slot, (_, row)) in rows.iter_mut().zip(keyed) {
        *slot = row;
    }
}

/// Assert that two query results are the same, panicking with a message that
/// names the query, row index, column and both values on a mismatch.
///
/// * Schemas must have the same field count and names; data types must be
///   equal except for nullability (of the fields and of nested fields).
/// * Row counts must be equal.
/// * With `ordered`, rows are compared position by position; otherwise both
///   sides are first sorted by their rendered row text (floats rounded to 9
///   significant digits for sorting only).
/// * Float16/32/64 cells match within 1e-9 relative or 1e-12 absolute
///   difference (NaN matches NaN); every other type (decimals, strings,
///   dates, integers, ...) must render identically.
pub fn assert_same_results(
    query: &str,
    expected: &[RecordBatch],
    actual: &[RecordBatch],
    ordered: bool,
) {
    let (Some(expected_schema), Some(actual_schema)) = (
        expected.first().map(|b| b.schema()),
        actual.first().map(|b| b.schema()),
    ) else {
        // An empty result may come back as no batches at all; then only the
        // row count can be compared.
        let e: usize = expected.iter().map(|b| b.num_rows()).sum();
        let a: usize = actual.iter().map(|b| b.num_rows()).sum();
        assert_eq!(
            e, a,
            "query {query}: row count differs: expected {e} rows, actual {a} rows"
        );
        return;
    };

    let names = |s: &arrow::datatypes::Schema| {
        s.fields()
            .iter()
            .map(|f| f.name().clone())
            .collect::<Vec<_>>()
    };
    let expected_names = names(&expected_schema);
    let actual_names = names(&actual_schema);
    if expected_names != actual_names {
        panic!(
            "query {query}: columns differ ({} vs {}):\n  expected: {expected_names:?}\n  actual:   {actual_names:?}",
            expected_names.len(),
            actual_names.len()
        );
    }
    for (e, a) in expected_schema.fields().iter().zip(actual_schema.fields()) {
        if !types_equal_ignoring_nullability(e.data_type(), a.data_type()) {
            panic!(
                "query {query}: column '{}' has a different type: expected {}, actual {}",
                e.name(),
                e.data_type(),
                a.data_type()
            );
        }
    }

    let mut expected_rows = rows_of(query, "expected", expected);
    let mut actual_rows = rows_of(query, "actual", actual);
    if expected_rows.len() != actual_rows.len() {
        panic!(
            "query {query}: row count differs: expected {} rows, actual {} rows",
            expected_rows.len(),
            actual_rows.len()
        );
    }
    if !ordered {
        sort_rows(&mut expected_rows);
        sort_rows(&mut actual_rows);
    }

    for (i, (e, a)) in expected_rows.iter().zip(&actual_rows).enumerate() {
        for (c, (ec, ac)) in e.iter().zip(a).enumerate() {
            if !ec.matches(ac) {
                let order = if ordered {
                    "in result order"
                } else {
                    "after sorting both sides by row text"
                };
                panic!(
                    "query {query}: mismatch at row {i} ({order}), column {c} '{}': expected {ec}, actual {ac}\n  expected row: {}\n  actual row:   {}",
                    expected_names[c],
                    render_row(e),
                    render_row(a)
                );
            }
        }
    }
}

/// Structural type equality that ignores nullability of nested fields (and
/// their names and metadata).
fn types_equal_ignoring_nullability(a: &DataType, b: &DataType) -> bool {
    use DataType::*;
    match (a, b) {
        (List(x), List(y))
        | (LargeList(x), LargeList(y))
        | (ListView(x), ListView(y))
        | (LargeListView(x), LargeListView(y)) => {
            types_equal_ignoring_nullability(x.data_type(), y.data_type())
        }
        (FixedSizeList(x, n), FixedSizeList(y, m)) => {
            n == m && types_equal_ignoring_nullability(x.data_type(), y.data_type())
        }
        (Map(x, sx), Map(y, sy)) => {
            sx == sy && types_equal_ignoring_nullability(x.data_type(), y.data_type())
        }
        (Struct(xs), Struct(ys)) => {
            xs.len() == ys.len()
                && xs.iter().zip(ys.iter()).all(|(x, y)| {
                    x.name() == y.name()
                        && types_equal_ignoring_nullability(x.data_type(), y.data_type())
                })
        }
        (Dictionary(kx, vx), Dictionary(ky, vy)) => {
            kx == ky && types_equal_ignoring_nullability(vx, vy)
        }
        _ => a == b,
    }
}

/// True when the outermost query has an ORDER BY: an `order by` appearing
/// outside all parentheses (so ORDER BYs of subqueries, CTE bodies and window
/// specifications do not count). Comments, string literals and quoted
/// identifiers are skipped. A lexical check, not a parser.
pub fn query_is_ordered(sql: &str) -> bool {
    let chars: Vec<char> = sql.chars().collect();
    let mut depth: i64 = 0;
    let mut words: Vec<String> = Vec::new(); // words at depth 0, lowercase
    let mut i = 0;
    let mut word = String::new();
    let flush = |word: &mut String, words: &mut Vec<String>, depth: i64| {
        if !word.is_empty() {
            if depth == 0 {
                words.push(word.to_ascii_lowercase());
            }
            word.clear();
        }
    };
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '-' && next == Some('-') {
            flush(&mut word, &mut words, depth);
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
            continue;
        }
        if c == '/' && next == Some('*') {
            flush(&mut word, &mut words, depth);
            i += 2;
            while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                i += 1;
            }
            i += 2;
            continue;
        }
        if c == '\'' || c == '"' || c == '`' {
            flush(&mut word, &mut words, depth);
            i += 1;
            while i < chars.len() {
                if chars[i] == c {
                    if chars.get(i + 1) == Some(&c) {
                        i += 2; // escaped quote
                        continue;
                    }
                    break;
                }
                i += 1;
            }
            i += 1;
            if depth == 0 {
                words.push(String::new()); // a literal separates words
            }
            continue;
        }
        if c.is_alphanumeric() || c == '_' {
            word.push(c);
        } else {
            flush(&mut word, &mut words, depth);
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                _ => {}
            }
            if depth == 0 && !c.is_whitespace() && c != ')' {
                words.push(String::new()); // punctuation separates words
            }
        }
        i += 1;
    }
    flush(&mut word, &mut words, depth);
    words.windows(2).any(|w| w[0] == "order" && w[1] == "by")
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{ArrayRef, Decimal128Array, Float64Array, Int64Array, StringArray};
    use arrow::datatypes::{Field, Schema};
    use std::panic::{AssertUnwindSafe, catch_unwind};
    use std::sync::Arc;

    fn batch(columns: Vec<(&str, ArrayRef, bool)>) -> RecordBatch {
        let fields: Vec<Field> = columns
            .iter()
            .map(|(n, a, nullable)| Field::new(*n, a.data_type().clone(), *nullable))
            .collect();
        RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            columns.into_iter().map(|(_, a, _)| a).collect(),
        )
        .unwrap()
    }

    fn panic_message(f: impl FnOnce()) -> String {
        let err = catch_unwind(AssertUnwindSafe(f)).expect_err("expected a mismatch panic");
        err.downcast_ref::<String>()
            .cloned()
            .or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap()
    }

    fn decimals(values: &[i128]) -> ArrayRef {
        Arc::new(
            Decimal128Array::from(values.to_vec())
                .with_precision_and_scale(15, 2)
                .unwrap(),
        )
    }

    #[test]
    fn unordered_results_in_different_order_match() {
        let expected = batch(vec![
            ("k", Arc::new(StringArray::from(vec!["a", "b", "c"])), false),
            (
                "v",
                Arc::new(Float64Array::from(vec![1.0, 2.0, 3.0])),
                false,
            ),
            ("d", decimals(&[100, 200, 300]), false),
        ]);
        // Split over two batches, in a different order, with nullable fields
        // and a float within tolerance.
        let a1 = batch(vec![
            ("k", Arc::new(StringArray::from(vec!["c"])), true),
            (
                "v",
                Arc::new(Float64Array::from(vec![3.0 * (1.0 + 1e-12)])),
                true,
            ),
            ("d", decimals(&[300]), true),
        ]);
        let a2 = batch(vec![
            ("k", Arc::new(StringArray::from(vec!["b", "a"])), true),
            ("v", Arc::new(Float64Array::from(vec![2.0, 1.0])), true),
            ("d", decimals(&[200, 100]), true),
        ]);
        assert_same_results(
            "unordered",
            std::slice::from_ref(&expected),
            &[a1.clone(), a2.clone()],
            false,
        );
        // The same rows in a different order are a mismatch when ordered.
        let msg = panic_message(|| assert_same_results("ordered", &[expected], &[a1, a2], true));
        assert!(
            msg.contains("query ordered") && msg.contains("row 0") && msg.contains("'k'"),
            "{msg}"
        );
    }

    #[test]
    fn float_off_by_1e6_relative_fails() {
        let expected = batch(vec![(
            "v",
            Arc::new(Float64Array::from(vec![1234.5])),
            false,
        )]);
        let actual = batch(vec![(
            "v",
            Arc::new(Float64Array::from(vec![1234.5 * (1.0 + 1e-6)])),
            false,
        )]);
        let msg = panic_message(|| assert_same_results("q14", &[expected], &[actual], false));
        assert!(
            msg.contains("q14")
                && msg.contains("row 0")
                && msg.contains("'v'")
                && msg.contains("1234.5"),
            "{msg}"
        );
    }

    #[test]
    fn different_decimal_fails() {
        let expected = batch(vec![
            ("id", Arc::new(Int64Array::from(vec![1, 2])), false),
            ("amount", decimals(&[12345, 600]), false),
        ]);
        let actual = batch(vec![
            ("id", Arc::new(Int64Array::from(vec![1, 2])), false),
            ("amount", decimals(&[12345, 601]), false),
        ]);
        let msg = panic_message(|| assert_same_results("q6", &[expected], &[actual], true));
        assert!(
            msg.contains("row 1")
                && msg.contains("'amount'")
                && msg.contains("6.00")
                && msg.contains("6.01"),
            "{msg}"
        );
    }

    #[test]
    fn schema_and_row_count_mismatches_fail() {
        let a = batch(vec![("x", Arc::new(Int64Array::from(vec![1, 2])), false)]);
        let b = batch(vec![("y", Arc::new(Int64Array::from(vec![1, 2])), false)]);
        let c = batch(vec![("x", Arc::new(Int64Array::from(vec![1])), false)]);
        let d = batch(vec![(
            "x",
            Arc::new(Float64Array::from(vec![1.0, 2.0])),
            false,
        )]);
        assert!(
            panic_message(|| assert_same_results("s", std::slice::from_ref(&a), &[b], false))
                .contains("columns differ")
        );
        assert!(
            panic_message(|| assert_same_results("s", std::slice::from_ref(&a), &[c], false))
                .contains("row count")
        );
        assert!(
            panic_message(|| assert_same_results("s", &[a], &[d], false))
                .contains("different type")
        );
    }

    #[test]
    fn outer_order_by_detection() {
        assert!(query_is_ordered("select a from t order by a"));
        assert!(query_is_ordered("SELECT a FROM t\nORDER\n  BY a LIMIT 10"));
        assert!(!query_is_ordered("select a from t"));
        assert!(!query_is_ordered(
            "select a from (select a from t order by a) s"
        ));
        assert!(!query_is_ordered(
            "select row_number() over (order by a) from t"
        ));
        assert!(!query_is_ordered("select 'order by' from t -- order by a"));
        assert!(query_is_ordered(
            "with c as (select a from t) select a from c order by (a + 1)"
        ));
        for (name, sql) in tally_client::tpch::TPCH_QUERIES {
            let expected = !matches!(name, "q6" | "q14" | "q17" | "q19");
            assert_eq!(query_is_ordered(sql), expected, "{name}");
        }
    }
}
