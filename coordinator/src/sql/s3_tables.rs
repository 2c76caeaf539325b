//! Tables at `s3://bucket/prefix/` (or one object): the bucket's client is registered in the
//! planning session's runtime, its objects are listed once here so that a missing bucket or
//! refused credentials fail the registration with one line, and the table is DataFusion's
//! ListingTable over the store. The data roots do not apply: they guard local paths.
//! A bucketed `CREATE TABLE ... AS SELECT` writes to an empty prefix (`S3Target`): the
//! workers put one object per bucket, then the coordinator puts the bucketing file.

use std::path::Path;

use datafusion::prelude::SessionContext;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use std::sync::Arc;

use tally_common::bucketing::{BucketSpec, METADATA_FILE};
use tally_common::object_stores::{S3Options, describe_error, register_bucket};

use super::table_format::TableFormat;
use crate::error::CoordinatorError;

/// A table registered from a bucket.
pub(crate) struct S3Table {
    /// As registered: a folder ends with `/`.
    pub location: String,
    pub format: TableFormat,
    /// Read from the prefix's bucketing file, when a bucketed CTAS wrote the table.
    pub bucketing: Option<BucketSpec>,
}

/// Registers the objects at `location` in `bucket` as table `name`.
pub(crate) async fn register_s3_table(
    ctx: &SessionContext,
    name: &str,
    location: &str,
    bucket: &str,
    options: &S3Options,
    format: Option<TableFormat>,
) -> Result<S3Table, CoordinatorError> {
    let store = store_for(name, bucket, options)?;
    let key = key_in_bucket(location, bucket);
    let one_object = TableFormat::of_file(Path::new(key)).is_some();
    let (location, found) = if one_object {
        (location.to_string(), Path::new(key).to_path_buf())
    } else {
        let folder = if location.ends_with('/') {
            location.to_string()
        } else {
            format!("{location}/")
        };
        (
            folder,
            first_table_file(store.as_ref(), name, bucket, key, options).await?,
        )
    };
    if one_object {
        store
            .head(&ObjectPath::from(key))
            .await
            .map_err(|e| refusal(name, bucket, options, &e))?;
    }
    let format = match format.or_else(|| TableFormat::of_file(&found)) {
        Some(format) => format,
        None => {
            return Err(CoordinatorError::Query(format!(
                "cannot tell the format of {location}: name objects *.parquet or *.csv, or give \
                 the format"
            )));
        }
    };
    let bucketing = match (one_object, format) {
        (false, TableFormat::Parquet) => {
            read_bucketing(store.as_ref(), name, bucket, key, options).await?
        }
        _ => None,
    };
    register_bucket(&ctx.runtime_env(), bucket, store);
    format
        .register(ctx, name, &location, one_object, &location)
        .await?;
    Ok(S3Table {
        location,
        format,
        bucketing,
    })
}

/// The bucketing recorded beside the objects under `prefix`, if a bucketed CTAS wrote them.
async fn read_bucketing(
    store: &dyn ObjectStore,
    name: &str,
    bucket: &str,
    prefix: &str,
    options: &S3Options,
) -> Result<Option<BucketSpec>, CoordinatorError> {
    let path = ObjectPath::from(prefix).join(METADATA_FILE);
    let bytes = match store.get(&path).await {
        Ok(object) => object.bytes().await,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => Err(e),
    }
    .map_err(|e| refusal(name, bucket, options, &e))?;
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        CoordinatorError::Query(format!(
            "table {name}: s3://{bucket}/{path} is not a bucketing file: {e}"
        ))
    })
}

/// The client of `bucket` for table `name`.
fn store_for(
    name: &str,
    bucket: &str,
    options: &S3Options,
) -> Result<Arc<dyn ObjectStore>, CoordinatorError> {
    options
        .build(bucket)
        .map_err(|e| CoordinatorError::Query(format!("table {name}: {e}")))
}

/// The object key (or prefix) an `s3://bucket/...` location names in `bucket`.
fn key_in_bucket<'a>(location: &'a str, bucket: &str) -> &'a str {
    location
        .strip_prefix("s3://")
        .and_then(|rest| rest.strip_prefix(bucket))
        .unwrap_or("")
        .trim_start_matches('/')
}

/// The first object under `prefix` that is a table file (any object when none is named
/// `*.parquet` or `*.csv`, for the format to be given); a missing bucket, refused
/// credentials or an empty prefix are errors.
async fn first_table_file(
    store: &dyn ObjectStore,
    name: &str,
    bucket: &str,
    prefix: &str,
    options: &S3Options,
) -> Result<std::path::PathBuf, CoordinatorError> {
    let prefix = ObjectPath::from(prefix);
    let objects: Vec<_> = store
        .list(Some(&prefix))
        .try_collect()
        .await
        .map_err(|e| refusal(name, bucket, options, &e))?;
    let names: Vec<&str> = objects.iter().map(|o| o.location.as_ref()).collect();
    let table_file = names
        .iter()
        .find(|n| TableFormat::of_file(Path::new(n)).is_some())
        .or(names.first());
    match table_file {
        Some(file) => Ok(Path::new(file).to_path_buf()),
        None => Err(CoordinatorError::NotFound(format!(
            "table {name}: no objects under s3://{bucket}/{prefix}"
        ))),
    }
}

fn refusal(
    name: &str,
    bucket: &str,
    options: &S3Options,
    error: &object_store::Error,
) -> CoordinatorError {
    let message = format!(
        "table {name}: {}",
        describe_error(bucket, &options.endpoint(), error)
    );
    match error {
        object_store::Error::NotFound { .. } => CoordinatorError::NotFound(message),
        _ if message.contains("refused the credentials") => CoordinatorError::Refused(message),
        _ if message.contains("does not exist") => CoordinatorError::NotFound(message),
        _ => CoordinatorError::Unavailable(message),
    }
}

/// An empty prefix in a bucket that a bucketed CTAS writes its table to.
pub(crate) struct S3Target {
    /// The options the bucket's tables use; the workers write with them too.
    pub options: S3Options,
    /// `s3://bucket/prefix/`.
    pub location: String,
    prefix: ObjectPath,
    store: Arc<dyn ObjectStore>,
}

impl S3Target {
    /// The prefix at `location` in `bucket`, once the store shows it holds no object.
    pub(crate) async fn open(
        name: &str,
        location: &str,
        bucket: &str,
        options: S3Options,
    ) -> Result<Self, CoordinatorError> {
        let store = store_for(name, bucket, &options)?;
        let key = key_in_bucket(location, bucket).trim_end_matches('/');
        let prefix = ObjectPath::from(key);
        if let Some(first) = store.list(Some(&prefix)).next().await {
            let first = first.map_err(|e| refusal(name, bucket, &options, &e))?;
            return Err(CoordinatorError::Query(format!(
                "cannot create table {name} at s3://{bucket}/{key}/: the prefix is not empty \
                 (it holds {})",
                first.location
            )));
        }
        Ok(Self {
            options,
            location: format!("s3://{bucket}/{key}/"),
            prefix,
            store,
        })
    }

    /// Records the bucketing beside the bucket objects the job's workers wrote.
    pub(crate) async fn commit(
        &self,
        name: &str,
        spec: &BucketSpec,
    ) -> Result<(), CoordinatorError> {
        let path = self.prefix.clone().join(METADATA_FILE);
        self.store
            .put(&path, spec.to_json().into_bytes().into())
            .await
            .map_err(|e| {
                CoordinatorError::Unavailable(format!(
                    "table {name}: writing {}: {}",
                    self.location,
                    tally_common::root_cause(&e)
                ))
            })?;
        Ok(())
    }
}
