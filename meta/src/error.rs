use thiserror::Error;

#[derive(Debug, Error)]
pub enum MetaError {
    #[error("etcd at {endpoints}: {message}")]
    Etcd { endpoints: String, message: String },
    #[error("corrupt record at {key}: {message}")]
    Corrupt { key: String, message: String },
}
