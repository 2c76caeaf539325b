//! Spark functions that `datafusion-spark` 55 does not have but DataFusion can compute: each
//! is a thin function that, when the plan is simplified, turns into DataFusion's own functions
//! with Spark's arguments translated (`date_format(d, 'yyyy-MM')` becomes
//! `to_char(CAST(d AS TIMESTAMP), '%Y-%m')`), or into `datafusion-spark`'s with the casts
//! Spark makes implicitly. Stage plans therefore hold only DataFusion's
//! functions and workers need nothing of these; calling one that was not rewritten fails.

use std::sync::Arc;

use arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::config::ConfigOptions;
use datafusion::common::{Result, ScalarValue, exec_err, plan_datafusion_err, plan_err};
use datafusion::functions::datetime as df_datetime;
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::{
    Cast, ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    TypeSignature, Volatility, lit,
};

use datafusion_spark::function::datetime as spark_datetime;

use super::pattern::spark_to_chrono;

/// What a function answers: one type, or the type of its first argument.
#[derive(Debug, PartialEq, Eq, Hash)]
enum Returns {
    Fixed(DataType),
    FirstArgument,
}

type Rewrite = fn(Vec<Expr>, &ConfigOptions) -> Result<Expr>;

#[derive(Debug)]
struct SparkCompat {
    name: &'static str,
    signature: Signature,
    returns: Returns,
    rewrite: Rewrite,
}

// One function per name: the name is its identity.
impl PartialEq for SparkCompat {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for SparkCompat {}

impl std::hash::Hash for SparkCompat {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl ScalarUDFImpl for SparkCompat {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match &self.returns {
            Returns::Fixed(t) => Ok(t.clone()),
            Returns::FirstArgument => Ok(arg_types.first().cloned().unwrap_or(DataType::Null)),
        }
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        exec_err!(
            "{} runs as DataFusion's functions once the plan is simplified; it cannot run as is",
            self.name
        )
    }

    fn simplify(&self, args: Vec<Expr>, info: &SimplifyContext) -> Result<ExprSimplifyResult> {
        Ok(ExprSimplifyResult::Simplified((self.rewrite)(
            args,
            info.config_options(),
        )?))
    }
}

fn compat(
    name: &'static str,
    arities: &[usize],
    volatility: Volatility,
    returns: Returns,
    rewrite: Rewrite,
) -> Arc<ScalarUDF> {
    let signatures = arities
        .iter()
        .map(|&n| {
            if n == 0 {
                TypeSignature::Nullary
            } else {
                TypeSignature::Any(n)
            }
        })
        .collect();
    Arc::new(ScalarUDF::new_from_impl(SparkCompat {
        name,
        signature: Signature::one_of(signatures, volatility),
        returns,
        rewrite,
    }))
}

/// The functions of this module, by their Spark names.
pub fn functions() -> Vec<Arc<ScalarUDF>> {
    use Returns::*;
    use Volatility::Immutable;
    vec![
        compat(
            "date_format",
            &[2],
            Immutable,
            Fixed(DataType::Utf8),
            date_format,
        ),
        compat(
            "to_date",
            &[1, 2],
            Immutable,
            Fixed(DataType::Date32),
            to_date,
        ),
        compat(
            "to_timestamp",
            &[1, 2],
            Immutable,
            Fixed(timestamp()),
            to_timestamp,
        ),
        compat(
            "from_unixtime",
            &[1, 2],
            Immutable,
            Fixed(DataType::Utf8),
            from_unixtime,
        ),
        compat(
            "unix_timestamp",
            &[0, 1, 2],
            Volatility::Stable,
            Fixed(DataType::Int64),
            unix_timestamp,
        ),
        compat("year", &[1], Immutable, Fixed(DataType::Int32), |a, _| {
            part("year", a, 0)
        }),
        compat(
            "quarter",
            &[1],
            Immutable,
            Fixed(DataType::Int32),
            |a, _| part("quarter", a, 0),
        ),
        compat("month", &[1], Immutable, Fixed(DataType::Int32), |a, _| {
            part("month", a, 0)
        }),
        compat(
            "dayofmonth",
            &[1],
            Immutable,
            Fixed(DataType::Int32),
            |a, _| part("day", a, 0),
        ),
        compat("day", &[1], Immutable, Fixed(DataType::Int32), |a, _| {
            part("day", a, 0)
        }),
        compat(
            "dayofyear",
            &[1],
            Immutable,
            Fixed(DataType::Int32),
            |a, _| part("doy", a, 0),
        ),
        // Spark counts Sunday as 1, DataFusion's `dow` as 0.
        compat(
            "dayofweek",
            &[1],
            Immutable,
            Fixed(DataType::Int32),
            |a, _| part("dow", a, 1),
        ),
        compat(
            "weekofyear",
            &[1],
            Immutable,
            Fixed(DataType::Int32),
            |a, _| part("week", a, 0),
        ),
        compat("sort_array", &[1, 2], Immutable, FirstArgument, sort_array),
        // Spark casts the arguments of its date arithmetic (`date_add(d, 7)`: 7 is a BIGINT
        // literal here); datafusion-spark's functions take exactly DATE and INT.
        compat(
            "date_add",
            &[2],
            Immutable,
            Fixed(DataType::Date32),
            |a, _| date_arithmetic(spark_datetime::date_add(), a),
        ),
        compat(
            "date_sub",
            &[2],
            Immutable,
            Fixed(DataType::Date32),
            |a, _| date_arithmetic(spark_datetime::date_sub(), a),
        ),
        compat(
            "add_months",
            &[2],
            Immutable,
            Fixed(DataType::Date32),
            |a, _| date_arithmetic(spark_datetime::add_months(), a),
        ),
    ]
}

fn date_arithmetic(udf: Arc<ScalarUDF>, args: Vec<Expr>) -> Result<Expr> {
    let [date, count] = <[Expr; 2]>::try_from(args).expect("signature: two arguments");
    Ok(call(
        udf,
        vec![cast(date, DataType::Date32), cast(count, DataType::Int32)],
    ))
}

fn timestamp() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, None)
}

fn call(udf: Arc<ScalarUDF>, args: Vec<Expr>) -> Expr {
    Expr::ScalarFunction(ScalarFunction::new_udf(udf, args))
}

fn cast(expr: Expr, to: DataType) -> Expr {
    Expr::Cast(Cast::new(Box::new(expr), to))
}

/// A constant Spark pattern as a chrono format literal.
fn pattern(name: &str, expr: &Expr) -> Result<Expr> {
    let text = match expr {
        Expr::Literal(
            ScalarValue::Utf8(Some(s))
            | ScalarValue::Utf8View(Some(s))
            | ScalarValue::LargeUtf8(Some(s)),
            _,
        ) => s,
        _ => return plan_err!("{name}: the pattern must be a constant string"),
    };
    spark_to_chrono(text)
        .map(lit)
        .map_err(|e| plan_datafusion_err!("{name}: {e}"))
}

fn date_format(args: Vec<Expr>, _: &ConfigOptions) -> Result<Expr> {
    let [value, format] = <[Expr; 2]>::try_from(args).expect("signature: two arguments");
    let format = pattern("date_format", &format)?;
    Ok(call(
        df_datetime::to_char(),
        vec![cast(value, timestamp()), format],
    ))
}

fn to_date(mut args: Vec<Expr>, _: &ConfigOptions) -> Result<Expr> {
    if args.len() == 1 {
        return Ok(cast(args.remove(0), DataType::Date32));
    }
    let format = pattern("to_date", &args[1])?;
    Ok(call(df_datetime::to_date(), vec![args.remove(0), format]))
}

fn to_timestamp(mut args: Vec<Expr>, config: &ConfigOptions) -> Result<Expr> {
    if args.len() == 1 {
        return Ok(cast(args.remove(0), timestamp()));
    }
    let format = pattern("to_timestamp", &args[1])?;
    let parsed = call(
        df_datetime::to_timestamp(config),
        vec![args.remove(0), format],
    );
    Ok(cast(parsed, timestamp()))
}

fn from_unixtime(args: Vec<Expr>, config: &ConfigOptions) -> Result<Expr> {
    let format = match args.get(1) {
        Some(format) => pattern("from_unixtime", format)?,
        None => lit("%Y-%m-%d %H:%M:%S"),
    };
    let seconds = cast(
        args.into_iter().next().expect("one argument"),
        DataType::Int64,
    );
    let at = call(df_datetime::to_timestamp_seconds(config), vec![seconds]);
    Ok(call(df_datetime::to_char(), vec![at, format]))
}

fn unix_timestamp(mut args: Vec<Expr>, config: &ConfigOptions) -> Result<Expr> {
    let value = match args.len() {
        0 => {
            return Ok(call(
                df_datetime::to_unixtime(),
                vec![call(df_datetime::now(config), vec![])],
            ));
        }
        1 => args.remove(0),
        _ => {
            let format = pattern("unix_timestamp", &args[1])?;
            return Ok(call(
                df_datetime::to_unixtime(),
                vec![args.remove(0), format],
            ));
        }
    };
    // Dates and timestamps count from midnight UTC; strings parse as timestamps.
    Ok(call(
        df_datetime::to_unixtime(),
        vec![cast(value, timestamp())],
    ))
}

fn part(field: &str, args: Vec<Expr>, offset: i32) -> Result<Expr> {
    let value = args.into_iter().next().expect("one argument");
    let part = cast(
        call(df_datetime::date_part(), vec![lit(field), value]),
        DataType::Int32,
    );
    Ok(if offset == 0 {
        part
    } else {
        part + lit(offset)
    })
}

/// Spark sorts ascending with NULLs first, descending with NULLs last.
fn sort_array(args: Vec<Expr>, _: &ConfigOptions) -> Result<Expr> {
    let ascending = match args.get(1) {
        None => true,
        Some(Expr::Literal(ScalarValue::Boolean(Some(b)), _)) => *b,
        Some(_) => return plan_err!("sort_array: the order must be a constant boolean"),
    };
    let array = args.into_iter().next().expect("one argument");
    let (order, nulls) = if ascending {
        ("ASC", "NULLS FIRST")
    } else {
        ("DESC", "NULLS LAST")
    };
    Ok(call(
        datafusion::functions_nested::sort::array_sort_udf(),
        vec![array, lit(order), lit(nulls)],
    ))
}
