//! The library's error type. Public API calls with bad shapes or bad arguments return these;
//! they never panic on user input.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    /// An op was given tensors whose shapes do not fit together.
    #[error("{op}: shape mismatch: {detail}")]
    Shape { op: &'static str, detail: String },

    /// An argument is out of its valid range (an axis, a probability, a token id, ...).
    #[error("{op}: invalid argument: {detail}")]
    Invalid { op: &'static str, detail: String },

    /// A parameter name that the store does not hold, or holds twice.
    #[error("parameter {0:?}: {1}")]
    Param(String, &'static str),

    /// A data or config file is malformed: names the file, the line (1-based, 0 if unknown) and
    /// what is wrong (which field, what was expected).
    #[error("{path}:{line}: {detail}")]
    Data {
        path: String,
        line: usize,
        detail: String,
    },

    /// Reading or writing a file failed; the path is part of the message.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T> = std::result::Result<T, Error>;

/// Shorthand for a shape error.
pub(crate) fn shape_err<T>(op: &'static str, detail: impl Into<String>) -> Result<T> {
    Err(Error::Shape {
        op,
        detail: detail.into(),
    })
}

/// Shorthand for an invalid-argument error.
pub(crate) fn invalid<T>(op: &'static str, detail: impl Into<String>) -> Result<T> {
    Err(Error::Invalid {
        op,
        detail: detail.into(),
    })
}
