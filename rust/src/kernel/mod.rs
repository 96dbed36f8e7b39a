//! The pure-Rust memory core (no Python types): exact fused nearest-centroid search.

pub mod bf16;
mod calibrate;
pub mod candidates;
pub mod dense;
pub mod distance;
pub mod engine;
pub mod error;
pub mod executor;
pub mod head;
pub mod index;
pub mod linger;
pub mod margin;
pub mod pool;
pub mod portable;
pub mod reach;
mod search;
pub mod simd_f32;
pub mod topk;
pub mod vectorised;
pub mod vnni;

#[cfg(test)]
mod tests;

pub use engine::Engine;
pub use error::KernelError;
pub use index::CentroidIndex;
