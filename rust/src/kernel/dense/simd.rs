//! The AVX-512 and AVX2 region kernels of `dense` (one macro, two instruction sets).

/// Writes the region kernel module `$name` for one instruction set: `$feat` its target
/// features, `$np` vectors per panel row, `$ops` its vector ops in `simd_f32`.
macro_rules! dense_kernel {
    ($name:ident, $feat:literal, $np:expr, $wide:expr, $ops:ident) => {
        pub(crate) mod $name {
            use crate::kernel::dense::{
                Operands, Prefetch, Region, DIRECT_KC, DIRECT_NC, KC, NC, NO_PREFETCH, PANELS,
                PREFETCH_ROWS,
            };
            use crate::kernel::simd_f32::$ops::*;
            use crate::kernel::simd_f32::Block;

            /// f32 lanes per vector.
            const LANES: usize = std::mem::size_of::<V>() / 4;
            /// Vectors per panel row.
            const NP: usize = $np;
            /// Columns per panel.
            pub const NR: usize = NP * LANES;
            /// Rows per micro-kernel tile.
            const MR: usize = 6;
            /// Vectors per tile of a direct read for 1..=MR rows.
            const WIDE: [usize; MR] = $wide;

            /// `c[0..R, 0..W·LANES] = (load_c ? c : 0) + a[0..R, 0..kc] · b[0..kc, 0..W·LANES]`
            /// (+ bias when `bias` is not null) over the block `o`, one FMA per (row, column,
            /// k) in k order, prefetching as `fetch` says.
            #[target_feature(enable = $feat)]
            #[inline]
            unsafe fn micro<const R: usize, const W: usize>(o: Operands, fetch: Prefetch) {
                let Operands {
                    a,
                    lda,
                    b,
                    ldb,
                    kc,
                    c,
                    ldc,
                    load_c,
                    bias,
                } = o;
                let (prefetch_cols, prefetch_offset) = fetch;
                let mut acc = [[zero(); W]; R];
                if load_c {
                    for (r, row) in acc.iter_mut().enumerate() {
                        for (p, v) in row.iter_mut().enumerate() {
                            *v = loadu(c.add(r * ldc + p * LANES));
                        }
                    }
                }
                for kk in 0..kc {
                    let bk = b.add(kk * ldb);
                    let ahead = bk.wrapping_offset(prefetch_offset);
                    for q in (0..prefetch_cols).step_by(16) {
                        prefetch(ahead.wrapping_add(q));
                    }
                    let mut bv = [zero(); W];
                    for (p, v) in bv.iter_mut().enumerate() {
                        *v = loadu(bk.add(p * LANES));
                    }
                    for (r, row) in acc.iter_mut().enumerate() {
                        let x = bcast(*a.add(r * lda + kk));
                        for (v, w) in row.iter_mut().zip(bv.iter()) {
                            *v = fma(x, *w, *v);
                        }
                    }
                }
                if !bias.is_null() {
                    for row in acc.iter_mut() {
                        for (p, v) in row.iter_mut().enumerate() {
                            *v = add(*v, loadu(bias.add(p * LANES)));
                        }
                    }
                }
                for (r, row) in acc.iter().enumerate() {
                    for (p, v) in row.iter().enumerate() {
                        store(c.add(r * ldc + p * LANES), *v);
                    }
                }
            }

            /// [`micro`] over `m` rows of a packed panel (slivers of MR, then one shorter tile).
            #[target_feature(enable = $feat)]
            unsafe fn rows(o: Operands, m: usize) {
                let mut i = 0;
                while i + MR <= m {
                    micro::<MR, NP>(o.at_row(i), NO_PREFETCH);
                    i += MR;
                }
                let o = o.at_row(i);
                match m - i {
                    0 => {}
                    1 => micro::<1, NP>(o, NO_PREFETCH),
                    2 => micro::<2, NP>(o, NO_PREFETCH),
                    3 => micro::<3, NP>(o, NO_PREFETCH),
                    4 => micro::<4, NP>(o, NO_PREFETCH),
                    _ => micro::<5, NP>(o, NO_PREFETCH),
                }
            }

            /// Up to `at_most` [`micro`] tiles of `R` rows × `W` vectors from column `j` while
            /// they fit in `cols`; returns the column after the last. The tile at column 0
            /// prefetches as `fetch` says, or with `spread` every tile its own columns of the
            /// row `fetch.1` elements past the one it reads.
            #[target_feature(enable = $feat)]
            unsafe fn tiles<const R: usize, const W: usize>(
                o: Operands,
                cols: usize,
                fetch: Prefetch,
                spread: bool,
                mut j: usize,
                at_most: usize,
            ) -> usize {
                let mut count = 0;
                while count < at_most && j + W * LANES <= cols {
                    let pf = if spread {
                        (W * LANES, fetch.1)
                    } else if j == 0 {
                        fetch
                    } else {
                        NO_PREFETCH
                    };
                    micro::<R, W>(o.at_col(j), pf);
                    j += W * LANES;
                    count += 1;
                }
                j
            }

            /// [`micro`] tiles of `R` rows × `W` vectors (then narrower ones) across the first
            /// `cols` columns (a multiple of LANES) of `b` read in place, prefetching as
            /// [`tiles`] says.
            #[target_feature(enable = $feat)]
            unsafe fn sweep<const R: usize, const W: usize>(
                o: Operands,
                cols: usize,
                fetch: Prefetch,
                spread: bool,
            ) {
                let mut j = tiles::<R, W>(o, cols, fetch, spread, 0, usize::MAX);
                // The rest in halving widths (a single-vector tile of one row would wait on
                // its FMA latency: 15 of them took longer than a 256-column tile).
                if W > 8 {
                    j = tiles::<R, 8>(o, cols, fetch, spread, j, 1);
                }
                if W > 4 {
                    j = tiles::<R, 4>(o, cols, fetch, spread, j, 1);
                }
                if W > 2 {
                    j = tiles::<R, 2>(o, cols, fetch, spread, j, 1);
                }
                tiles::<R, 1>(o, cols, fetch, spread, j, usize::MAX);
            }

            /// The direct (unpacked) read of `cols` columns for `m <= MR` rows: the widest tile
            /// the registers hold for that many rows ([`WIDE`]), so that each k reads a long
            /// run of row k of `b`.
            #[target_feature(enable = $feat)]
            unsafe fn direct(o: Operands, m: usize, cols: usize, fetch: Prefetch, spread: bool) {
                match m {
                    1 => sweep::<1, { WIDE[0] }>(o, cols, fetch, spread),
                    2 => sweep::<2, { WIDE[1] }>(o, cols, fetch, spread),
                    3 => sweep::<3, { WIDE[2] }>(o, cols, fetch, spread),
                    4 => sweep::<4, { WIDE[3] }>(o, cols, fetch, spread),
                    5 => sweep::<5, { WIDE[4] }>(o, cols, fetch, spread),
                    _ => sweep::<MR, { WIDE[5] }>(o, cols, fetch, spread),
                }
            }

            /// The last `cols < LANES` columns of a direct read, one `f32::mul_add` (an FMA
            /// instruction here) per (row, column, k) in k order: the lanes' arithmetic.
            #[target_feature(enable = $feat)]
            unsafe fn tail(o: Operands, m: usize, cols: usize) {
                for i in 0..m {
                    for j in 0..cols {
                        let out = o.c.add(i * o.ldc + j);
                        let mut acc = if o.load_c { *out } else { 0.0 };
                        for kk in 0..o.kc {
                            acc = (*o.a.add(i * o.lda + kk)).mul_add(*o.b.add(kk * o.ldb + j), acc);
                        }
                        if !o.bias.is_null() {
                            acc += *o.bias.add(j);
                        }
                        *out = acc;
                    }
                }
            }

            /// A ragged panel (`cols < NR` columns; `o.b` its packed panel, zero-padded): the
            /// tile goes through a buffer of MR × NR (zero padding in the columns past `cols`).
            #[target_feature(enable = $feat)]
            unsafe fn ragged(o: Operands, m: usize, cols: usize) {
                let mut tile = [0.0f32; MR * NR];
                let mut padded_bias = [0.0f32; NR];
                let bias = if o.bias.is_null() {
                    o.bias
                } else {
                    padded_bias[..cols].copy_from_slice(std::slice::from_raw_parts(o.bias, cols));
                    padded_bias.as_ptr()
                };
                let mut i = 0;
                while i < m {
                    let h = (m - i).min(MR);
                    let c = o.c.add(i * o.ldc);
                    if o.load_c {
                        for r in 0..h {
                            let src = std::slice::from_raw_parts(c.add(r * o.ldc), cols);
                            tile[r * NR..r * NR + cols].copy_from_slice(src);
                        }
                    }
                    let in_tile = Operands {
                        a: o.a.add(i * o.lda),
                        ldb: NR,
                        c: tile.as_mut_ptr(),
                        ldc: NR,
                        bias,
                        ..o
                    };
                    rows(in_tile, h);
                    for r in 0..h {
                        let dst = std::slice::from_raw_parts_mut(c.add(r * o.ldc), cols);
                        dst.copy_from_slice(&tile[r * NR..r * NR + cols]);
                    }
                    i += MR;
                }
            }

            /// Packs `b[0..kc, 0..nc]` as panels of NR columns (panel `p`, row `k` at
            /// `(p * kc + k) * NR`), zero-padding the last.
            #[target_feature(enable = $feat)]
            unsafe fn pack(b: *const f32, ldb: usize, kc: usize, nc: usize, dst: *mut f32) {
                let panels = nc.div_ceil(NR);
                for kk in 0..kc {
                    let src = b.add(kk * ldb);
                    for p in 0..panels {
                        let w = (nc - p * NR).min(NR);
                        let d = dst.add((p * kc + kk) * NR);
                        if w == NR {
                            for v in 0..NP {
                                store(d.add(v * LANES), loadu(src.add(p * NR + v * LANES)));
                            }
                        } else {
                            std::ptr::copy_nonoverlapping(src.add(p * NR), d, w);
                            std::ptr::write_bytes(d.add(w), 0, NR - w);
                        }
                    }
                }
            }

            /// What the last row group of block (`jc`, `pc`) prefetches: the rows of the next
            /// block (`pc + kc`, or row 0 of the next column block) at the same offsets.
            fn next_block(r: &Region, jc: usize, nc: usize, pc: usize, kc: usize) -> Prefetch {
                if pc + kc < r.k {
                    (nc, (kc * r.ldb) as isize)
                } else if jc + nc < r.n {
                    (nc, nc as isize - (pc * r.ldb) as isize)
                } else {
                    NO_PREFETCH
                }
            }

            /// Computes one region of `out` (see the module docs).
            ///
            /// # Safety
            /// The CPU must have `$feat`; the region's pointers must address its elements.
            #[target_feature(enable = $feat)]
            pub(crate) unsafe fn region(r: &Region) {
                PANELS.with(|cell| {
                    let mut buf = cell.borrow_mut();
                    let need = (KC * NC).div_ceil(16);
                    if buf.len() < need {
                        buf.resize(need, Block::default());
                    }
                    let panels = buf.as_mut_ptr().cast::<f32>();
                    let mut jc = 0;
                    while jc < r.n {
                        let (kc_max, nc_max) = if r.direct {
                            (DIRECT_KC, DIRECT_NC)
                        } else {
                            (KC, NC)
                        };
                        let nc = (r.n - jc).min(nc_max);
                        let full = nc / NR;
                        let mut pc = 0;
                        while pc < r.k {
                            let kc = (r.k - pc).min(kc_max);
                            let b = r.b.add(pc * r.ldb + jc);
                            if !r.direct {
                                pack(b, r.ldb, kc, nc, panels);
                            }
                            let bias = if pc + kc == r.k && !r.bias.is_null() {
                                r.bias.add(jc)
                            } else {
                                std::ptr::null()
                            };
                            let block = Operands {
                                a: r.a.add(pc),
                                lda: r.lda,
                                b,
                                ldb: r.ldb,
                                kc,
                                c: r.c.add(jc),
                                ldc: r.ldc,
                                load_c: pc > 0,
                                bias,
                            };
                            let mut i = 0;
                            while i < r.m {
                                let h = (r.m - i).min(MR);
                                let o = block.at_row(i);
                                if r.direct {
                                    let vec_cols = nc / LANES * LANES;
                                    // The first rows fetch this block's rows PREFETCH_ROWS
                                    // ahead; when more rows follow, the last ones (which
                                    // read the block from L2) fetch the next block, each
                                    // tile its own columns, so memory streams throughout.
                                    let (pf, spread) = if i == 0 {
                                        ((nc, (PREFETCH_ROWS * r.ldb) as isize), false)
                                    } else if i + h == r.m {
                                        (next_block(r, jc, nc, pc, kc), true)
                                    } else {
                                        (NO_PREFETCH, false)
                                    };
                                    direct(o, h, vec_cols, pf, spread);
                                    tail(o.at_col(vec_cols), h, nc - vec_cols);
                                } else {
                                    // panel p holds columns p·NR.. packed: row stride NR
                                    let panel = |p: usize| Operands {
                                        b: panels.add(p * kc * NR).cast_const(),
                                        ldb: NR,
                                        ..o.at_col(p * NR)
                                    };
                                    for p in 0..full {
                                        rows(panel(p), h);
                                    }
                                    if full * NR < nc {
                                        ragged(panel(full), h, nc - full * NR);
                                    }
                                }
                                i += MR;
                            }
                            pc += kc;
                        }
                        jc += nc;
                    }
                });
            }
        }
    };
}

dense_kernel!(avx512, "avx512f", 4, [16, 12, 8, 6, 4, 4], avx512_ops);
dense_kernel!(avx2, "avx2,fma", 2, [8, 6, 4, 3, 2, 2], avx2_ops);
