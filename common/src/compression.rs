//! Arrow IPC body compression for data on the wire.

use arrow::ipc::CompressionType;
use arrow::ipc::writer::IpcWriteOptions;

use tally_proto::plan as pb;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WireCompression {
    #[default]
    None,
    Lz4,
    Zstd,
}

impl WireCompression {
    pub fn parse(name: &str) -> Result<Self, String> {
        match name.to_ascii_lowercase().as_str() {
            "none" | "" => Ok(Self::None),
            "lz4" => Ok(Self::Lz4),
            "zstd" => Ok(Self::Zstd),
            other => Err(format!("compression {other}: use lz4, zstd or none")),
        }
    }

    pub fn ipc_options(self) -> IpcWriteOptions {
        let compression = match self {
            Self::None => None,
            Self::Lz4 => Some(CompressionType::LZ4_FRAME),
            Self::Zstd => Some(CompressionType::ZSTD),
        };
        IpcWriteOptions::default()
            .try_with_compression(compression)
            .expect("arrow is built with ipc_compression")
    }
}

impl From<WireCompression> for pb::Compression {
    fn from(c: WireCompression) -> Self {
        match c {
            WireCompression::None => pb::Compression::None,
            WireCompression::Lz4 => pb::Compression::Lz4,
            WireCompression::Zstd => pb::Compression::Zstd,
        }
    }
}

impl From<pb::Compression> for WireCompression {
    fn from(c: pb::Compression) -> Self {
        match c {
            pb::Compression::None => WireCompression::None,
            pb::Compression::Lz4 => WireCompression::Lz4,
            pb::Compression::Zstd => WireCompression::Zstd,
        }
    }
}
