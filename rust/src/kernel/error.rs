//! Errors of the kernel: every invalid input the Python binding maps to `ValueError`.

use std::fmt;

/// Why a kernel call refused its input. `Display` names the offending argument.
#[derive(Debug, Clone, PartialEq)]
pub enum KernelError {
    /// `centroids` has no row (K = 0).
    EmptyCentroids,
    /// `centroids` or `x` has zero columns (D = 0).
    ZeroDim { argument: &'static str },
    /// `argument` does not have exactly two dimensions.
    BadNdim { argument: &'static str, ndim: usize },
    /// `x` has `got` columns, the index `expected`.
    DimMismatch { expected: usize, got: usize },
    /// `k` is outside `1..=num_classes`.
    BadK { k: i64, num_classes: usize },
    /// `argument` holds NaN or ±Inf in row `row`.
    NonFinite { argument: &'static str, row: usize },
    /// `argument` (a scalar such as `scale` or `eps`) must be finite and > 0.
    NotPositive { argument: &'static str, value: f64 },
    /// The thread count must be >= 1.
    BadThreads { n: i64 },
    /// More centroids than 32-bit indices can address.
    TooManyCentroids { num_classes: usize },
    /// `kernel` names no engine; `choices` lists the valid names.
    UnknownKernel { name: String, choices: String },
    /// `kernel` names an engine this CPU cannot run; `choices` lists those it can.
    UnsupportedKernel { name: &'static str, choices: String },
    /// `kernel` names an engine that handles at most `max_dim` dimensions.
    KernelDim {
        name: &'static str,
        max_dim: usize,
        dim: usize,
    },
    /// A matrix argument of `matmul` has the wrong shape or layout; `detail` says what.
    BadMatrix {
        argument: &'static str,
        detail: String,
    },
    /// An output of `bytes` bytes could not be allocated (the binding raises MemoryError).
    OutOfMemory { bytes: usize },
}

impl fmt::Display for KernelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EmptyCentroids => write!(f, "centroids must have at least one row (K >= 1)"),
            Self::ZeroDim { argument } => {
                write!(f, "{argument} must have at least one column (D >= 1)")
            }
            Self::BadNdim { argument, ndim } => {
                write!(
                    f,
                    "{argument} must be 2-D (rows, D), got {ndim} dimension(s)"
                )
            }
            Self::DimMismatch { expected, got } => write!(
                f,
                "x has {got} columns but the centroids have D = {expected}"
            ),
            Self::BadK { k, num_classes } => {
                write!(
                    f,
                    "k must be in [1, {num_classes}] (the number of centroids), got {k}"
                )
            }
            Self::NonFinite { argument, row } => {
                write!(f, "{argument} contains NaN or Inf (first in row {row})")
            }
            Self::NotPositive { argument, value } => {
                write!(f, "{argument} must be finite and > 0, got {value}")
            }
            Self::BadThreads { n } => write!(f, "n (the thread count) must be >= 1, got {n}"),
            Self::TooManyCentroids { num_classes } => write!(
                f,
                "centroids has {num_classes} rows; at most {} are supported",
                u32::MAX
            ),
            Self::UnknownKernel { name, choices } => {
                write!(f, "kernel must be one of {choices}, got {name:?}")
            }
            Self::UnsupportedKernel { name, choices } => write!(
                f,
                "kernel {name:?} cannot run on this CPU; this CPU runs {choices}"
            ),
            Self::KernelDim { name, max_dim, dim } => write!(
                f,
                "kernel {name:?} handles D <= {max_dim}, the centroids have D = {dim} \
                 (use kernel='auto')"
            ),
            Self::BadMatrix { argument, detail } => write!(f, "{argument} {detail}"),
            Self::OutOfMemory { bytes } => write!(
                f,
                "cannot allocate {bytes} bytes for the results (split the batch into smaller ones)"
            ),
        }
    }
}

impl std::error::Error for KernelError {}
