//! [`vectorised!`]: a function compiled three times, for AVX-512F, for AVX2+FMA and for the
//! baseline, run in the widest copy the CPU has. Its body performs the same IEEE operations in
//! every copy (fused multiply-adds only through `mul_add`, which rounds once everywhere), so a
//! value's bits never depend on the CPU; the tests pin each copy in turn through
//! [`copies::WIDEST`] and compare bits.

/// Defines `pub fn $name` that runs `$body` compiled for AVX-512F, else AVX2, else the
/// baseline: the same IEEE operations in each, wider vectors.
macro_rules! vectorised {
    ($(#[$doc:meta])* pub fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty $body:block) => {
        $(#[$doc])*
        pub fn $name($($arg: $ty),*) -> $ret {
            #[inline(always)]
            fn body($($arg: $ty),*) -> $ret $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,fma")]
                unsafe fn wide($($arg: $ty),*) -> $ret {
                    body($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn narrow($($arg: $ty),*) -> $ret {
                    body($($arg),*)
                }
                let widest = $crate::kernel::vectorised::copies::widest();
                if widest >= $crate::kernel::vectorised::copies::WIDE && std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has AVX-512F
                    return unsafe { wide($($arg),*) };
                }
                if widest >= $crate::kernel::vectorised::copies::NARROW
                    && std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: the CPU has AVX2 and FMA
                    return unsafe { narrow($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}
pub(crate) use vectorised;

/// Which compiled copies [`vectorised!`] functions may run (the tests run each in turn).
pub mod copies {
    #[cfg(test)]
    pub const BASELINE: u8 = 0;
    pub const NARROW: u8 = 1;
    pub const WIDE: u8 = 2;

    #[cfg(test)]
    pub static WIDEST: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(WIDE);

    /// The widest copy allowed: AVX-512F outside the tests.
    #[inline(always)]
    pub fn widest() -> u8 {
        #[cfg(test)]
        return WIDEST.load(std::sync::atomic::Ordering::Relaxed);
        #[cfg(not(test))]
        WIDE
    }
}
