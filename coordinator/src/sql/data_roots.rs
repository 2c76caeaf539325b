//! The folders SQL may read tables from and write tables to. Whoever can submit SQL names
//! paths (`CREATE EXTERNAL TABLE ... LOCATION`, `CREATE TABLE ... WITH (location = ...)`,
//! RegisterTable), and the workers would read or write them: paths outside the data roots are
//! refused before anything touches them. Paths are resolved first (`..`, symlinks), so neither
//! can lead out of a root. Tables the operator registers at startup (`--table`) are trusted:
//! their paths become roots.

use std::path::{Component, Path, PathBuf};
use std::sync::RwLock;

use crate::error::CoordinatorError;

#[derive(Debug)]
pub(crate) struct DataRoots {
    /// Resolved absolute paths.
    roots: RwLock<Vec<PathBuf>>,
}

impl DataRoots {
    pub(crate) fn new(roots: &[PathBuf]) -> Result<Self, CoordinatorError> {
        let resolved = roots
            .iter()
            .map(|root| {
                resolve(root).map_err(|e| {
                    CoordinatorError::Query(format!("data root {}: {e}", root.display()))
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            roots: RwLock::new(resolved),
        })
    }

    /// Makes `path` (a table the operator registered) readable.
    pub(crate) fn allow(&self, path: &str) {
        if let Ok(resolved) = resolve(Path::new(path)) {
            let mut roots = self.roots.write().expect("data roots poisoned");
            if !roots.contains(&resolved) {
                roots.push(resolved);
            }
        }
    }

    /// `path` if it lies under a data root; a clear refusal otherwise.
    pub(crate) fn check(&self, path: &str) -> Result<PathBuf, CoordinatorError> {
        if path.contains("://") {
            return Err(CoordinatorError::Refused(format!(
                "{path}: only local paths under the data roots can be tables, not URLs"
            )));
        }
        let resolved = resolve(Path::new(path))
            .map_err(|e| CoordinatorError::Refused(format!("{path}: {e}")))?;
        let roots = self.roots.read().expect("data roots poisoned");
        let inside = |p: &Path| roots.iter().any(|root| p.starts_with(root));
        if !inside(&resolved) {
            let listed: Vec<String> = roots.iter().map(|r| r.display().to_string()).collect();
            return Err(CoordinatorError::Refused(format!(
                "{path} is outside the data roots ({}): the coordinator reads and writes tables \
                 only under them; start it with --data-root to add a folder",
                listed.join(", ")
            )));
        }
        // A folder is read with everything in it: no symlink inside may lead out.
        if let Some(link) = escaping_link(&resolved, &inside) {
            return Err(CoordinatorError::Refused(format!(
                "{path}: {} links outside the data roots",
                link.display()
            )));
        }
        Ok(resolved)
    }
}

/// The first symlink under folder `dir` whose target is not `inside`, walking iteratively.
fn escaping_link(dir: &Path, inside: &dyn Fn(&Path) -> bool) -> Option<PathBuf> {
    let mut pending = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_symlink() {
                match std::fs::canonicalize(&path) {
                    Ok(target) if inside(&target) => {}
                    _ => return Some(path),
                }
            } else if kind.is_dir() {
                pending.push(path);
            }
        }
    }
    None
}

/// The absolute path `path` stands for: relative to the current directory, `.` and `..`
/// folded, symlinks of its existing part followed. The part that does not exist yet (a table
/// about to be written) is appended as written.
fn resolve(path: &Path) -> std::io::Result<PathBuf> {
    let absolute = std::env::current_dir()?.join(path);
    let mut normal = PathBuf::new();
    for component in absolute.components() {
        match component {
            Component::ParentDir => {
                normal.pop();
            }
            Component::CurDir => {}
            other => normal.push(other),
        }
    }
    let mut existing = normal.as_path();
    let mut missing = Vec::new();
    loop {
        match std::fs::canonicalize(existing) {
            Ok(real) => {
                let mut resolved = real;
                resolved.extend(missing.iter().rev());
                return Ok(resolved);
            }
            Err(_) => match (existing.parent(), existing.file_name()) {
                (Some(parent), Some(name)) => {
                    missing.push(name.to_owned());
                    existing = parent;
                }
                _ => return Ok(normal),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(roots: &DataRoots, path: &str) -> String {
        let err = roots.check(path).expect_err(path);
        assert!(matches!(err, CoordinatorError::Refused(_)), "{err}");
        err.to_string()
    }

    #[test]
    fn only_paths_under_a_root_pass() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("data");
        std::fs::create_dir_all(root.join("t")).unwrap();
        std::fs::write(dir.path().join("secret.csv"), "a\n1\n").unwrap();
        let roots = DataRoots::new(std::slice::from_ref(&root)).unwrap();

        let inside = roots.check(root.join("t").to_str().unwrap()).unwrap();
        assert!(inside.ends_with("data/t"));
        // Not yet written (a CTAS target) but under the root.
        roots
            .check(root.join("new/table").to_str().unwrap())
            .unwrap();

        let err = refused(&roots, "/etc/passwd");
        assert!(
            err.contains("/etc/passwd is outside the data roots"),
            "{err}"
        );
        assert!(err.contains("--data-root"), "{err}");
        refused(&roots, dir.path().join("secret.csv").to_str().unwrap());
        refused(&roots, root.join("../secret.csv").to_str().unwrap());
        refused(&roots, root.join("t/../../secret.csv").to_str().unwrap());
        assert!(refused(&roots, "file:///etc/passwd").contains("not URLs"));
    }

    #[test]
    fn symlinks_cannot_lead_out_of_a_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("data");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(dir.path().join("secret.csv"), "a\n1\n").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret.csv"), root.join("link.csv")).unwrap();
        let roots = DataRoots::new(std::slice::from_ref(&root)).unwrap();
        refused(&roots, root.join("link.csv").to_str().unwrap());

        // A folder under the root holding a link out of it.
        let table = root.join("table/part=1");
        std::fs::create_dir_all(&table).unwrap();
        std::fs::write(table.join("a.csv"), "a\n1\n").unwrap();
        roots.check(root.join("table").to_str().unwrap()).unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret.csv"), table.join("b.csv")).unwrap();
        let err = refused(&roots, root.join("table").to_str().unwrap());
        assert!(err.contains("b.csv links outside the data roots"), "{err}");
    }

    #[test]
    fn operator_tables_become_roots() {
        let dir = tempfile::tempdir().unwrap();
        let table = dir.path().join("orders");
        std::fs::create_dir_all(&table).unwrap();
        let roots = DataRoots::new(&[]).unwrap();
        refused(&roots, table.to_str().unwrap());
        roots.allow(table.to_str().unwrap());
        roots.check(table.to_str().unwrap()).unwrap();
        refused(&roots, dir.path().to_str().unwrap());
    }
}
