//! Typed identifiers, so a stage number is never mistaken for a partition number.

use std::fmt;

use tally_proto::plan as pb;

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId(String);

impl JobId {
    /// A new random job ID: short enough to type, long enough not to collide.
    pub fn new_random() -> Self {
        let uuid = uuid::Uuid::new_v4().simple().to_string();
        Self(uuid[..12].to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A job ID received from outside: it names a spool folder, so only letters, digits, `-`
    /// and `_` (never `..` or `/`), at most 64 of them.
    pub fn parse(id: &str) -> Result<Self, String> {
        let valid = !id.is_empty()
            && id.len() <= 64
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if valid {
            Ok(Self(id.to_string()))
        } else {
            Err(format!(
                "invalid job ID {:?}: expected up to 64 letters, digits, - or _",
                id.chars().take(80).collect::<String>()
            ))
        }
    }
}

impl From<String> for JobId {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl From<&str> for JobId {
    fn from(s: &str) -> Self {
        Self(s.to_string())
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StageId(pub u32);

impl fmt::Display for StageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct WorkerId(String);

impl WorkerId {
    pub fn new_random() -> Self {
        let uuid = uuid::Uuid::new_v4().simple().to_string();
        Self(format!("w-{}", &uuid[..8]))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<String> for WorkerId {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl From<&str> for WorkerId {
    fn from(s: &str) -> Self {
        Self(s.to_string())
    }
}

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One attempt at one partition of one stage.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskKey {
    pub job_id: JobId,
    pub stage_id: StageId,
    pub partition: u32,
    pub attempt: u32,
}

impl fmt::Display for TaskKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}#{}",
            self.job_id, self.stage_id, self.partition, self.attempt
        )
    }
}

impl From<&TaskKey> for pb::TaskKey {
    fn from(key: &TaskKey) -> Self {
        pb::TaskKey {
            job_id: key.job_id.to_string(),
            stage_id: key.stage_id.0,
            partition: key.partition,
            attempt: key.attempt,
        }
    }
}

impl From<pb::TaskKey> for TaskKey {
    fn from(key: pb::TaskKey) -> Self {
        TaskKey {
            job_id: JobId::from(key.job_id),
            stage_id: StageId(key.stage_id),
            partition: key.partition,
            attempt: key.attempt,
        }
    }
}
