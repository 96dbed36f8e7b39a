//! `oltr` memory core: exact, fused, multi-threaded nearest-centroid search and reachability.
//!
//! [`kernel`] is pure Rust; `python` (feature `python`) is the only PyO3 file and builds the
//! extension module `oltr._core`.

pub mod kernel;

#[cfg(feature = "python")]
mod python;

pub use kernel::{CentroidIndex, Engine, KernelError};
