//! The candidate-pass engines: their names, which ones this CPU runs, and the `auto` choice.

use super::bf16;
use super::calibrate;
use super::error::KernelError;
use super::simd_f32::Isa;
use super::vnni::{self, I8Kernel};

/// Environment variable: comma-separated engine names this process treats as unsupported
/// (emulates a CPU without them; the portable engine cannot be disabled). Read at each
/// index build.
pub const DISABLE_VAR: &str = "OLTR_DISABLE_KERNELS";

/// Which candidate pass an index runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// AVX-512 VNNI int8 dot products on int8-packed centroids with per-vector scales.
    Avx512VnniI8,
    /// AVX-512 BF16 dot products on bf16-packed centroids.
    Avx512Bf16,
    /// The int8 scheme of [`Engine::Avx512VnniI8`] on 256-bit vectors: AVX-VNNI, or the
    /// EVEX-256 form of AVX-512 VNNI + VL on CPUs without AVX-VNNI (`vnni/ymm.rs`).
    AvxVnniI8,
    /// f32 dot products with AVX-512F on f32 panels of 16 centroids.
    Avx512F32,
    /// f32 dot products with AVX2+FMA on f32 panels of 8 centroids.
    Avx2F32,
    /// Portable f32 dot products (any CPU).
    Portable,
}

/// The engines a process may use: those the CPU has, minus those [`DISABLE_VAR`] lists.
#[derive(Debug, Clone)]
struct Support {
    disabled: String,
}

impl Support {
    fn from_env() -> Self {
        Self {
            disabled: std::env::var(DISABLE_VAR).unwrap_or_default(),
        }
    }

    fn runs(&self, engine: Engine) -> bool {
        engine == Engine::Portable
            || (engine.cpu_has() && !self.disabled.split(',').any(|n| n.trim() == engine.name()))
    }

    fn available(&self) -> Vec<Engine> {
        Engine::ALL.into_iter().filter(|&e| self.runs(e)).collect()
    }

    fn check(&self, engine: Engine) -> Result<(), KernelError> {
        if self.runs(engine) {
            return Ok(());
        }
        Err(KernelError::UnsupportedKernel {
            name: engine.name(),
            choices: quoted(
                std::iter::once("auto").chain(self.available().into_iter().map(Engine::name)),
            ),
        })
    }

    fn parse(&self, name: &str) -> Result<Engine, KernelError> {
        if name == "auto" {
            return Ok(calibrate::ranked(self.available(), &self.disabled)[0]);
        }
        let engine = Engine::ALL
            .into_iter()
            .find(|e| e.name() == name)
            .ok_or_else(|| KernelError::UnknownKernel {
                name: name.to_string(),
                choices: quoted(std::iter::once("auto").chain(Engine::ALL.map(Engine::name))),
            })?;
        self.check(engine)?;
        Ok(engine)
    }
}

impl Engine {
    /// Every engine in the static order of preference (of their multiply-add rates), which
    /// the calibration keeps unless timing shows a clear difference (`calibrate.rs`).
    pub const ALL: [Engine; 6] = [
        Self::Avx512VnniI8,
        Self::Avx512Bf16,
        Self::AvxVnniI8,
        Self::Avx512F32,
        Self::Avx2F32,
        Self::Portable,
    ];

    /// The engine's public name (`kernel=` in Python).
    pub fn name(self) -> &'static str {
        match self {
            Self::Avx512VnniI8 => "avx512-vnni-i8",
            Self::Avx512Bf16 => "avx512-bf16",
            Self::AvxVnniI8 => "avx-vnni-i8",
            Self::Avx512F32 => "avx512-f32",
            Self::Avx2F32 => "avx2-f32",
            Self::Portable => "portable-f32",
        }
    }

    /// True when the CPU has the instructions the engine needs.
    fn cpu_has(self) -> bool {
        match self {
            Self::Avx512VnniI8 => I8Kernel::Avx512.available(),
            Self::Avx512Bf16 => bf16::available(),
            Self::AvxVnniI8 => I8Kernel::avx256().is_some(),
            Self::Avx512F32 => Isa::Avx512.available(),
            Self::Avx2F32 => Isa::Avx2.available(),
            Self::Portable => true,
        }
    }

    /// True when this process may run the engine: the CPU has its instructions and
    /// [`DISABLE_VAR`] does not list it.
    pub fn is_supported(self) -> bool {
        Support::from_env().runs(self)
    }

    /// The engines this process runs, fastest first as ranked by the cached calibration
    /// (`calibrate.rs`); never empty: `portable-f32` runs anywhere and comes last.
    pub fn available() -> Vec<Engine> {
        let support = Support::from_env();
        calibrate::ranked(support.available(), &support.disabled)
    }

    /// The fastest engine this process runs (the first of [`Engine::available`]).
    pub fn detect() -> Self {
        Self::available()[0]
    }

    /// The largest D the engine handles (`usize::MAX`: any).
    pub fn max_dim(self) -> usize {
        if self.is_int8() {
            vnni::MAX_DIM
        } else {
            usize::MAX
        }
    }

    /// True for the int8 engines (the widest margin; D at most `vnni::MAX_DIM`).
    pub fn is_int8(self) -> bool {
        matches!(self, Self::Avx512VnniI8 | Self::AvxVnniI8)
    }

    /// The engine that runs the same scheme on wider vectors, which `auto` prefers wherever
    /// this process runs it: [`Engine::Avx512VnniI8`] for [`Engine::AvxVnniI8`] (the
    /// calibration does not time a superseded engine and ranks it after the others).
    pub fn superseded_by(self) -> Option<Self> {
        match self {
            Self::AvxVnniI8 => Some(Self::Avx512VnniI8),
            _ => None,
        }
    }

    /// What `auto` picks for centroids of `dim` dimensions: the fastest engine this process
    /// runs that handles `dim`.
    pub fn auto(dim: usize) -> Self {
        Self::available()
            .into_iter()
            .find(|e| dim <= e.max_dim())
            .unwrap_or(Self::Portable)
    }

    /// The engine an `auto` index whose small-k engine is `small` also packs for large k:
    /// for an int8 engine (the widest margin: at large k its extra exact distances outweigh
    /// its faster scan), the next engine of the ranking that handles `dim`, other than
    /// `portable-f32` and the int8 engines; `None` otherwise (one engine serves every k).
    pub fn auto_large_k(small: Engine, dim: usize) -> Option<Self> {
        if !small.is_int8() {
            return None;
        }
        Self::available()
            .into_iter()
            .find(|&e| !e.is_int8() && e != Self::Portable && dim <= e.max_dim())
    }

    /// The engine named `name` (`"auto"`: [`Engine::detect`]); an unknown name or an engine
    /// this process cannot run is an error naming the valid choices.
    pub fn from_name(name: &str) -> Result<Self, KernelError> {
        Support::from_env().parse(name)
    }

    /// `Ok` when this process runs the engine, else the error naming those it runs.
    pub fn check_supported(self) -> Result<(), KernelError> {
        Support::from_env().check(self)
    }
}

/// `'a', 'b', 'c'`.
pub(crate) fn quoted<'a>(names: impl Iterator<Item = &'a str>) -> String {
    names
        .map(|n| format!("'{n}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disabled_engines_are_refused_but_portable_stays() {
        let all: Vec<&str> = Engine::ALL.iter().map(|e| e.name()).collect();
        let none = Support {
            disabled: all.join(","),
        };
        assert_eq!(none.available(), vec![Engine::Portable]);
        assert_eq!(none.parse("auto"), Ok(Engine::Portable));
        let err = none.parse("avx2-f32").unwrap_err();
        assert!(
            matches!(err, KernelError::UnsupportedKernel { .. }),
            "{err}"
        );
        assert!(
            err.to_string().contains("runs 'auto', 'portable-f32'"),
            "{err}"
        );
        let err = none.parse("avx9").unwrap_err();
        assert!(matches!(err, KernelError::UnknownKernel { .. }), "{err}");
        let one = Support {
            disabled: format!(" {} ", Engine::detect().name()),
        };
        if Engine::detect() != Engine::Portable {
            assert!(!one.available().contains(&Engine::detect()));
            assert!(one.parse(Engine::detect().name()).is_err());
        }
    }

    #[test]
    fn names_round_trip_and_unknown_names_list_the_choices() {
        for e in Engine::available() {
            assert_eq!(Engine::from_name(e.name()), Ok(e));
        }
        assert_eq!(Engine::from_name("auto"), Ok(Engine::detect()));
        assert_eq!(*Engine::available().last().unwrap(), Engine::Portable);
        let msg = Engine::from_name("avx9").unwrap_err().to_string();
        assert!(msg.contains("\"avx9\""), "{msg}");
        for e in std::iter::once("auto").chain(Engine::ALL.map(Engine::name)) {
            assert!(msg.contains(&format!("'{e}'")), "{msg}");
        }
    }
}
