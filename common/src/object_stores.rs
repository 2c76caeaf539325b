//! Tables in S3-compatible object storage (`s3://bucket/prefix/`). The coordinator and every
//! worker build their own client for a bucket, each from its own `AWS_*` environment
//! (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT_URL`,
//! `AWS_ALLOW_HTTP`, ...) overlaid with the table's options (`'aws.endpoint' '...'`). The
//! coordinator lists the objects and reads the footers; workers read their splits straight
//! from the store. A table's options reach the workers inside each job's settings, under
//! `tally.s3.<bucket>`; they are never logged, and `Debug` hides the secrets.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use datafusion::error::{DataFusionError, Result};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::runtime_env::RuntimeEnv;
pub use object_store::ObjectStore;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};

/// The prefix of S3 options among a table's options.
pub const TABLE_OPTION_PREFIX: &str = "aws.";

/// The job setting that carries one bucket's options to the workers: `tally.s3.<bucket>`.
pub const SETTING_PREFIX: &str = "tally.s3.";

/// The options a table may set, after `aws.`; the same names as DataFusion's CLI.
const OPTIONS: [&str; 6] = [
    "endpoint",
    "region",
    "access_key_id",
    "secret_access_key",
    "session_token",
    "allow_http",
];

/// Never logged, never listed, never put in an error message.
const SECRETS: [&str; 2] = ["secret_access_key", "session_token"];

/// One bucket's options beyond the environment, by name (`endpoint`, `region`, ...).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct S3Options(BTreeMap<String, String>);

impl fmt::Debug for S3Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown: BTreeMap<&str, &str> = self
            .0
            .iter()
            .map(|(k, v)| {
                let v = if SECRETS.contains(&k.as_str()) {
                    "<hidden>"
                } else {
                    v.as_str()
                };
                (k.as_str(), v)
            })
            .collect();
        fmt::Debug::fmt(&shown, f)
    }
}

impl S3Options {
    /// The `aws.*` entries of a table's options; other keys are left to the caller.
    pub fn from_table_options(options: &HashMap<String, String>) -> Result<Self> {
        let mut picked = BTreeMap::new();
        for (key, value) in options {
            let Some(name) = key.strip_prefix(TABLE_OPTION_PREFIX) else {
                continue;
            };
            if !OPTIONS.contains(&name) {
                return Err(DataFusionError::Plan(format!(
                    "unknown table option '{key}': S3 tables take {}",
                    OPTIONS
                        .map(|o| format!("{TABLE_OPTION_PREFIX}{o}"))
                        .join(", ")
                )));
            }
            picked.insert(name.to_string(), value.clone());
        }
        Ok(Self(picked))
    }

    /// The endpoint the store answers at, for messages: the table's, the environment's, or
    /// AWS's.
    pub fn endpoint(&self) -> String {
        self.0
            .get("endpoint")
            .cloned()
            .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok())
            .or_else(|| std::env::var("AWS_ENDPOINT").ok())
            .unwrap_or_else(|| "AWS S3".to_string())
    }

    /// A client for `bucket`: the environment, then these options over it.
    pub fn build(&self, bucket: &str) -> Result<Arc<dyn ObjectStore>> {
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
        for (name, value) in &self.0 {
            let key: AmazonS3ConfigKey = format!("aws_{name}")
                .parse()
                .map_err(|e| DataFusionError::Plan(format!("S3 option {name}: {e}")))?;
            builder = builder.with_config(key, value);
        }
        let store = builder.build().map_err(|e| {
            DataFusionError::Plan(format!("bucket {bucket}: {}", crate::root_cause(&e)))
        })?;
        Ok(Arc::new(store))
    }

    /// These options as a table's options (`aws.<name>`).
    pub fn to_table_options(&self) -> HashMap<String, String> {
        self.0
            .iter()
            .map(|(name, value)| (format!("{TABLE_OPTION_PREFIX}{name}"), value.clone()))
            .collect()
    }

    /// These options without the secrets, as table options: what the cluster state may
    /// record of them.
    pub fn recordable(&self) -> BTreeMap<String, String> {
        self.to_table_options()
            .into_iter()
            .filter(|(key, _)| {
                !SECRETS
                    .iter()
                    .any(|secret| key.strip_prefix(TABLE_OPTION_PREFIX) == Some(secret))
            })
            .collect()
    }

    /// The job setting that carries these options for `bucket` to the workers.
    pub fn to_setting(&self, bucket: &str) -> (String, String) {
        let value = serde_json::to_string(&self.0).expect("a map of strings serializes");
        (format!("{SETTING_PREFIX}{bucket}"), value)
    }
}

/// `sql` with the values of secret table options (`'aws.secret_access_key' '...'`) blanked,
/// for the job history and anything else that shows a statement back.
pub fn redact_secrets(sql: &str) -> String {
    let lower = sql.to_ascii_lowercase();
    // (start, end) of every secret value, between its quotes.
    let mut values = Vec::new();
    for secret in SECRETS {
        let name = format!("{TABLE_OPTION_PREFIX}{secret}");
        let mut from = 0;
        while let Some(found) = lower[from..].find(&name) {
            let mut at = from + found + name.len();
            if sql[at..].starts_with('\'') {
                at += 1; // the name's closing quote
            }
            // The value is the next single-quoted literal.
            let Some(open) = sql[at..].find('\'').map(|i| at + i + 1) else {
                break;
            };
            let Some(close) = sql[open..].find('\'').map(|i| open + i) else {
                break;
            };
            values.push((open, close));
            from = close + 1;
        }
    }
    values.sort();
    let mut out = String::with_capacity(sql.len());
    let mut copied = 0;
    for (open, close) in values {
        if open >= copied {
            out.push_str(&sql[copied..open]);
            out.push_str("***");
            copied = close;
        }
    }
    out.push_str(&sql[copied..]);
    out
}

/// The bucket of an `s3://bucket/...` location, `None` for other locations.
pub fn s3_bucket(location: &str) -> Option<Result<String>> {
    let rest = location.strip_prefix("s3://")?;
    let bucket = rest
        .split('/')
        .next()
        .filter(|bucket| !bucket.is_empty())
        .map(str::to_string);
    Some(bucket.ok_or_else(|| {
        DataFusionError::Plan(format!("{location}: an S3 location is s3://BUCKET/PREFIX/"))
    }))
}

/// The buckets a job's settings name with their options; the remaining settings.
pub fn split_settings(
    settings: &HashMap<String, String>,
) -> Result<(HashMap<String, String>, BTreeMap<String, S3Options>)> {
    let mut rest = HashMap::new();
    let mut buckets = BTreeMap::new();
    for (key, value) in settings {
        match key.strip_prefix(SETTING_PREFIX) {
            Some(bucket) => {
                let options: BTreeMap<String, String> = serde_json::from_str(value)
                    .map_err(|e| DataFusionError::Plan(format!("setting {key}: {e}")))?;
                buckets.insert(bucket.to_string(), S3Options(options));
            }
            None => {
                rest.insert(key.clone(), value.clone());
            }
        }
    }
    Ok((rest, buckets))
}

/// Makes `bucket` readable through `runtime` with `store`.
pub fn register_bucket(runtime: &RuntimeEnv, bucket: &str, store: Arc<dyn ObjectStore>) {
    let url = ObjectStoreUrl::parse(format!("s3://{bucket}")).expect("a bucket name is a host");
    runtime.register_object_store(url.as_ref(), store);
}

/// One line for a failed request to `bucket`: whether the bucket is missing or refused the
/// credentials, or else the store's own message without its request details.
pub fn describe_error(bucket: &str, endpoint: &str, error: &object_store::Error) -> String {
    // The S3 error code sits somewhere in the chain of sources.
    let mut chain = error.to_string();
    let mut cause: &dyn std::error::Error = error;
    while let Some(source) = cause.source() {
        chain.push(' ');
        chain.push_str(&source.to_string());
        cause = source;
    }
    let refused = matches!(
        error,
        object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. }
    ) || [
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "AccessDenied",
    ]
    .iter()
    .any(|code| chain.contains(code));
    if chain.contains("NoSuchBucket") {
        format!("bucket {bucket} does not exist at {endpoint}")
    } else if refused {
        format!(
            "bucket {bucket} at {endpoint} refused the credentials: check AWS_ACCESS_KEY_ID and \
             AWS_SECRET_ACCESS_KEY, or the table's aws.access_key_id and aws.secret_access_key"
        )
    } else {
        let root = crate::root_cause(error);
        format!(
            "bucket {bucket} at {endpoint}: {}",
            root.split_whitespace().collect::<Vec<_>>().join(" ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_cross_to_workers_and_hide_their_secrets() {
        let table: HashMap<String, String> = [
            ("aws.endpoint", "http://127.0.0.1:9000"),
            ("aws.secret_access_key", "very-secret"),
            ("format.has_header", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let options = S3Options::from_table_options(&table).unwrap();
        assert!(!format!("{options:?}").contains("very-secret"));
        assert!(format!("{options:?}").contains("127.0.0.1:9000"));

        let (key, value) = options.to_setting("my.bucket");
        let mut settings = HashMap::from([(key, value)]);
        settings.insert("datafusion.a".to_string(), "1".to_string());
        let (rest, buckets) = split_settings(&settings).unwrap();
        assert_eq!(rest.len(), 1);
        assert_eq!(buckets.get("my.bucket"), Some(&options));
        let recorded = options.recordable();
        assert_eq!(
            recorded.get("aws.endpoint").map(String::as_str),
            Some("http://127.0.0.1:9000")
        );
        assert_eq!(recorded.len(), 1, "{recorded:?}");
    }

    #[test]
    fn statements_are_recorded_without_their_secrets() {
        let sql = "CREATE EXTERNAL TABLE t STORED AS PARQUET LOCATION 's3://b/t/' OPTIONS \
                   ('aws.access_key_id' 'AKIA1', 'AWS.SECRET_ACCESS_KEY' 'sec1', \
                   'aws.session_token' 'tok1', 'aws.region' 'eu-west-1')";
        let redacted = redact_secrets(sql);
        assert!(
            !redacted.contains("sec1") && !redacted.contains("tok1"),
            "{redacted}"
        );
        assert!(
            redacted.contains("'AWS.SECRET_ACCESS_KEY' '***'"),
            "{redacted}"
        );
        assert!(redacted.contains("'AKIA1'") && redacted.contains("'eu-west-1'"));
        assert_eq!(redact_secrets("SELECT 1"), "SELECT 1");
    }

    #[test]
    fn unknown_options_and_bad_locations_are_refused() {
        let table = HashMap::from([("aws.secret".to_string(), "x".to_string())]);
        let error = S3Options::from_table_options(&table).unwrap_err();
        assert!(error.to_string().contains("aws.secret_access_key"));
        assert_eq!(s3_bucket("s3://b/p/").unwrap().unwrap(), "b");
        assert!(s3_bucket("s3:///p").unwrap().is_err());
        assert!(s3_bucket("/data/t").is_none());
    }
}
