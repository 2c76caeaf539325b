//! Where a view keeps its states: a folder on the shared filesystem, or a prefix in an S3
//! bucket. Each generation is a sub-folder (`gen-000003/`) of bucket files. A refresh writes
//! the next generation, carries into it the buckets no new input touches, and then removes
//! the generations no reader can still be using.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::datasource::physical_plan::parquet::metadata::DFParquetMetadata;
use datafusion::parquet::file::reader::{FileReader, SerializedFileReader};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use tally_common::bucketing::bucket_file;

use super::table::generation_dir;
use crate::error::CoordinatorError;

pub(crate) enum ViewLocation {
    Local(PathBuf),
    S3 {
        /// `s3://bucket/prefix`, without a trailing `/`.
        root: PathBuf,
        prefix: ObjectPath,
        store: Arc<dyn ObjectStore>,
    },
}

impl ViewLocation {
    /// The prefix `location` (`s3://bucket/prefix`) in `bucket`, read through `store`.
    pub(crate) fn s3(location: &str, bucket: &str, store: Arc<dyn ObjectStore>) -> Self {
        let key = location
            .strip_prefix("s3://")
            .and_then(|rest| rest.strip_prefix(bucket))
            .unwrap_or("")
            .trim_matches('/');
        Self::S3 {
            root: PathBuf::from(format!("s3://{bucket}/{key}")),
            prefix: ObjectPath::from(key),
            store,
        }
    }

    /// The view's folder or `s3://bucket/prefix`, as the catalog records it.
    pub(crate) fn root(&self) -> &Path {
        match self {
            Self::Local(dir) => dir,
            Self::S3 { root, .. } => root,
        }
    }

    /// Where the workers write generation `generation`.
    pub(crate) fn generation(&self, generation: u64) -> PathBuf {
        generation_dir(self.root(), generation)
    }

    fn generation_prefix(prefix: &ObjectPath, generation: u64) -> ObjectPath {
        prefix.clone().join(format!("gen-{generation:06}").as_str())
    }

    /// Whether nothing is stored there yet (a new view must not mix with other files).
    pub(crate) async fn is_empty(&self) -> Result<bool, CoordinatorError> {
        match self {
            Self::Local(dir) => Ok(!std::fs::read_dir(dir).is_ok_and(|mut e| e.next().is_some())),
            Self::S3 {
                prefix,
                store,
                root,
            } => match store.list(Some(prefix)).next().await {
                None => Ok(true),
                Some(Ok(_)) => Ok(false),
                Some(Err(e)) => Err(unavailable(root, "listing", &e)),
            },
        }
    }

    /// Removes generation `generation` (left by a refresh that failed: never part of the
    /// view). Best effort: a generation no manifest names is never read.
    pub(crate) async fn remove_generation(&self, generation: u64) {
        match self {
            Self::Local(_) => {
                let _ = std::fs::remove_dir_all(self.generation(generation));
            }
            Self::S3 { prefix, store, .. } => {
                remove_prefix(store, &Self::generation_prefix(prefix, generation)).await;
            }
        }
    }

    /// Removes every generation before `keep_from`: unreachable once a newer one is
    /// committed (the previous one stays for queries that started before the commit).
    pub(crate) async fn remove_generations_before(&self, keep_from: u64) {
        for generation in self.generations().await {
            if generation < keep_from {
                self.remove_generation(generation).await;
            }
        }
    }

    /// Removes everything the view stored (DROP MATERIALIZED VIEW).
    pub(crate) async fn remove_all(&self) {
        match self {
            Self::Local(dir) => {
                if let Err(error) = std::fs::remove_dir_all(dir) {
                    tracing::warn!(dir = %dir.display(), %error, "cannot remove the folder of a dropped view");
                }
            }
            Self::S3 { prefix, store, .. } => remove_prefix(store, prefix).await,
        }
    }

    async fn generations(&self) -> Vec<u64> {
        let names: Vec<String> = match self {
            Self::Local(dir) => std::fs::read_dir(dir)
                .map(|entries| {
                    entries
                        .flatten()
                        .map(|e| e.file_name().to_string_lossy().to_string())
                        .collect()
                })
                .unwrap_or_default(),
            Self::S3 { prefix, store, .. } => store
                .list_with_delimiter(Some(prefix))
                .await
                .map(|listing| {
                    listing
                        .common_prefixes
                        .iter()
                        .filter_map(|p| p.filename().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
        };
        names
            .iter()
            .filter_map(|name| name.strip_prefix("gen-")?.parse().ok())
            .collect()
    }

    /// Puts the files of the `carried` buckets of generation `from` into generation `to`, in
    /// place of the empty files their tasks wrote (they received no rows): hard links on a
    /// filesystem, copies inside the store, so nothing crosses the network.
    pub(crate) async fn carry_buckets(
        &self,
        from: u64,
        to: u64,
        carried: &BTreeSet<usize>,
    ) -> Result<(), CoordinatorError> {
        let (from, to) = (self.generation(from), self.generation(to));
        for &bucket in carried {
            let (old, new) = (bucket_file(&from, bucket), bucket_file(&to, bucket));
            let carried = match self {
                Self::Local(_) => std::fs::remove_file(&new)
                    .and_then(|_| {
                        std::fs::hard_link(&old, &new)
                            .or_else(|_| std::fs::copy(&old, &new).map(|_| ()))
                    })
                    .map_err(|e| e.to_string()),
                Self::S3 {
                    root,
                    prefix,
                    store,
                } => store
                    .copy(&object(root, prefix, &old), &object(root, prefix, &new))
                    .await
                    .map_err(|e| tally_common::root_cause(&e).to_string()),
            };
            carried.map_err(|e| {
                CoordinatorError::Internal(format!(
                    "carrying {} into {}: {e}",
                    old.display(),
                    to.display()
                ))
            })?;
        }
        Ok(())
    }

    /// Rows in the bucket files of generation `generation` (one per group), from their
    /// footers.
    pub(crate) async fn rows_in(&self, generation: u64) -> Result<u64, CoordinatorError> {
        let dir = self.generation(generation);
        let failed = |e: &dyn std::fmt::Display| {
            CoordinatorError::Internal(format!("reading the states at {}: {e}", dir.display()))
        };
        let mut rows = 0u64;
        match self {
            Self::Local(_) => {
                for entry in std::fs::read_dir(&dir).map_err(|e| failed(&e))? {
                    let path = entry.map_err(|e| failed(&e))?.path();
                    if path.extension().is_some_and(|e| e == "parquet") {
                        let file = std::fs::File::open(&path).map_err(|e| failed(&e))?;
                        let reader = SerializedFileReader::new(file).map_err(|e| failed(&e))?;
                        rows += reader.metadata().file_metadata().num_rows().max(0) as u64;
                    }
                }
            }
            Self::S3 { prefix, store, .. } => {
                let objects: Vec<_> = store
                    .list(Some(&Self::generation_prefix(prefix, generation)))
                    .try_collect()
                    .await
                    .map_err(|e| failed(&tally_common::root_cause(&e)))?;
                for object in objects {
                    if object.location.extension() != Some("parquet") {
                        continue;
                    }
                    let metadata = DFParquetMetadata::new(store.as_ref(), &object)
                        .fetch_metadata()
                        .await
                        .map_err(|e| failed(&e))?;
                    rows += metadata.file_metadata().num_rows().max(0) as u64;
                }
            }
        }
        Ok(rows)
    }
}

/// The object of `path`, a file under `root` (`s3://bucket/prefix`), in the bucket.
fn object(root: &Path, prefix: &ObjectPath, path: &Path) -> ObjectPath {
    let relative = path.strip_prefix(root).unwrap_or(path);
    relative.iter().fold(prefix.clone(), |key, part| {
        key.join(part.to_string_lossy().as_ref())
    })
}

/// Deletes every object under `prefix`; failures are logged (nothing reads them any more).
async fn remove_prefix(store: &Arc<dyn ObjectStore>, prefix: &ObjectPath) {
    let objects: Vec<_> = match store.list(Some(prefix)).try_collect().await {
        Ok(objects) => objects,
        Err(error) => {
            tracing::warn!(%prefix, error = %tally_common::root_cause(&error), "cannot list stale view states");
            return;
        }
    };
    for object in objects {
        if let Err(error) = store.delete(&object.location).await {
            tracing::warn!(object = %object.location, error = %tally_common::root_cause(&error), "cannot delete stale view states");
        }
    }
}

fn unavailable(root: &Path, doing: &str, error: &object_store::Error) -> CoordinatorError {
    CoordinatorError::Unavailable(format!(
        "{doing} {}: {}",
        root.display(),
        tally_common::root_cause(error)
    ))
}
