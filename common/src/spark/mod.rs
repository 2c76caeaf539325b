//! Spark SQL's functions: `datafusion-spark`'s (Spark semantics for `date_add`, `concat_ws`,
//! `collect_list`, `size`, ...), the Spark names DataFusion already computes
//! (`percentile_approx`, `approx_count_distinct`), and the few that `compat` rewrites into
//! DataFusion's own functions. The coordinator registers them in Spark-dialect sessions.
//!
//! Several of `datafusion-spark`'s functions share their name with DataFusion's (`abs`,
//! `concat`, `avg`, ...) but not their behaviour, and a worker's session knows only
//! DataFusion's. So a stage plan marks each Spark function it calls (see `codec.rs`) and
//! the worker takes it from here, never from its registry by name.

mod compat;
pub mod pattern;

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use datafusion::logical_expr::{AggregateUDF, ScalarUDF, WindowUDF};
pub use datafusion_spark::planner::SparkFunctionPlanner;

/// Every Spark function a stage plan may call, by name.
struct SparkFunctions {
    scalar: HashMap<String, Arc<ScalarUDF>>,
    aggregate: HashMap<String, Arc<AggregateUDF>>,
    window: HashMap<String, Arc<WindowUDF>>,
}

static SPARK: LazyLock<SparkFunctions> = LazyLock::new(|| SparkFunctions {
    // Only datafusion-spark's: `compat`'s are rewritten away before plans are cut.
    scalar: by_name(datafusion_spark::all_default_scalar_functions(), |f| {
        f.name().to_string()
    }),
    aggregate: by_name(datafusion_spark::all_default_aggregate_functions(), |f| {
        f.name().to_string()
    }),
    window: by_name(datafusion_spark::all_default_window_functions(), |f| {
        f.name().to_string()
    }),
});

fn by_name<T>(functions: Vec<Arc<T>>, name: fn(&T) -> String) -> HashMap<String, Arc<T>> {
    functions.into_iter().map(|f| (name(&f), f)).collect()
}

/// The scalar functions a Spark session has beyond (and over) DataFusion's.
pub fn scalar_functions() -> Vec<Arc<ScalarUDF>> {
    let mut functions = datafusion_spark::all_default_scalar_functions();
    functions.extend(compat::functions());
    functions
}

/// The aggregate functions a Spark session has beyond (and over) DataFusion's: Spark's own,
/// and DataFusion's under the names Spark gives them. Those keep DataFusion's name in plans.
pub fn aggregate_functions() -> Vec<Arc<AggregateUDF>> {
    use datafusion::functions_aggregate::{approx_distinct, approx_percentile_cont};
    let mut functions = datafusion_spark::all_default_aggregate_functions();
    functions.push(Arc::new(
        approx_distinct::approx_distinct_udaf()
            .as_ref()
            .clone()
            .with_aliases(["approx_count_distinct"]),
    ));
    functions.push(Arc::new(
        approx_percentile_cont::approx_percentile_cont_udaf()
            .as_ref()
            .clone()
            .with_aliases(["percentile_approx", "approx_percentile"]),
    ));
    functions
}

pub fn window_functions() -> Vec<Arc<WindowUDF>> {
    datafusion_spark::all_default_window_functions()
}

/// Whether `udf` is the Spark function of its name (not DataFusion's of the same name).
pub fn is_spark_udf(udf: &ScalarUDF) -> bool {
    SPARK
        .scalar
        .get(udf.name())
        .is_some_and(|spark| same_type(&**spark.inner(), &**udf.inner()))
}

pub fn is_spark_udaf(udaf: &AggregateUDF) -> bool {
    SPARK
        .aggregate
        .get(udaf.name())
        .is_some_and(|spark| same_type(&**spark.inner(), &**udaf.inner()))
}

pub fn is_spark_udwf(udwf: &WindowUDF) -> bool {
    SPARK
        .window
        .get(udwf.name())
        .is_some_and(|spark| same_type(&**spark.inner(), &**udwf.inner()))
}

fn same_type(a: &dyn Any, b: &dyn Any) -> bool {
    a.type_id() == b.type_id()
}

pub fn spark_udf(name: &str) -> Option<Arc<ScalarUDF>> {
    SPARK.scalar.get(name).cloned()
}

pub fn spark_udaf(name: &str) -> Option<Arc<AggregateUDF>> {
    SPARK.aggregate.get(name).cloned()
}

pub fn spark_udwf(name: &str) -> Option<Arc<WindowUDF>> {
    SPARK.window.get(name).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spark_functions_are_told_apart_from_datafusions_of_the_same_name() {
        let spark_abs = spark_udf("abs").expect("datafusion-spark has abs");
        assert!(is_spark_udf(&spark_abs));
        assert!(!is_spark_udf(&datafusion::functions::math::abs()));
        let collect = spark_udaf("collect_list").expect("datafusion-spark has collect_list");
        assert!(is_spark_udaf(&collect));
        assert!(!is_spark_udaf(
            &datafusion::functions_aggregate::average::avg_udaf()
        ));
    }
}
