//! Dense projection `y[n, out] = x[n, k] · W[out, k]ᵀ` (every Linear of the model, both heads,
//! HuBERT, the codec's im2col convolutions). The product goes through `matrixmultiply`'s packed
//! sgemm (BLIS-style: packed panels, a register-blocked AVX2/FMA micro-kernel chosen at run
//! time). rayon splits the output features into blocks, one single-threaded sgemm each; weights
//! stored as bf16/f16 are widened (FP8 E4M3 ones dequantized) block by block into a reused f32
//! buffer.

use super::SyncPtr;
use crate::tensor::CpuStorage;

/// Weight rows the GEMM can read: model storage of any dtype, or a plain f32 slice (codec).
pub trait WeightRows: Sync {
    /// Widen elements `start..start + out.len()` into `out`.
    fn read(&self, start: usize, out: &mut [f32]);
    /// The elements as f32 without copying, when stored that way.
    fn as_f32(&self) -> Option<&[f32]>;
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl WeightRows for CpuStorage {
    fn read(&self, start: usize, out: &mut [f32]) {
        self.read_f32(start, out)
    }
    fn as_f32(&self) -> Option<&[f32]> {
        match self {
            CpuStorage::F32(v) => Some(v),
            _ => None,
        }
    }
    fn len(&self) -> usize {
        CpuStorage::len(self)
    }
}

/// FP8 weights are decoded (table lookup times the row's scale) as the GEMM widens bf16:
/// per block of rows, into the reused f32 buffer.
impl WeightRows for crate::quant::weight::Fp8Weight {
    fn read(&self, start: usize, out: &mut [f32]) {
        self.read_f32(start, out)
    }
    fn as_f32(&self) -> Option<&[f32]> {
        None
    }
    fn len(&self) -> usize {
        self.codes().len()
    }
}

impl WeightRows for [f32] {
    fn read(&self, start: usize, out: &mut [f32]) {
        let n = out.len();
        out.copy_from_slice(&self[start..start + n]);
    }
    fn as_f32(&self) -> Option<&[f32]> {
        Some(self)
    }
    fn len(&self) -> usize {
        <[f32]>::len(self)
    }
}
use rayon::prelude::*;

#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let ca = a.chunks_exact(8);
    let cb = b.chunks_exact(8);
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut s = (acc[0] + acc[4]) + (acc[1] + acc[5]) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// Output features per rayon task: one sgemm call, and for non-f32 weights the rows widened at
/// once (COLS·k f32, 2 MiB at k = 8192).
const COLS: usize = 64;
/// Rows (tokens, time steps) per task.
pub(super) const ROWS: usize = 512;

/// `x` [n, k] f32, `w` [out, k] any dtype -> `y` [n, out] (overwritten).
///
/// Batch-invariant: sgemm cuts k into fixed `kc` (256) panels and every element of C is its own
/// accumulator lane, summed over k in order within a panel and panel after panel, whatever the
/// number of rows or which block of features it sits in. So a row gives bit-identical results
/// alone, in a decode batch or inside a prefill chunk; the serving scheduler relies on this
/// (chunked prefill, recompute after preemption and prefix-cache hits must not change any output).
pub fn matmul<W: WeightRows + ?Sized>(
    x: &[f32],
    n: usize,
    k: usize,
    w: &W,
    out: usize,
    y: &mut [f32],
) {
    assert_eq!(x.len(), n * k, "matmul: x");
    assert_eq!(w.len(), out * k, "matmul: w");
    assert_eq!(y.len(), n * out, "matmul: y");
    if n == 0 || out == 0 {
        return;
    }
    if k == 0 {
        y.fill(0.0);
        return;
    }
    if n < SMALL_ROWS {
        return matmul_few_rows(x, n, k, w, out, y);
    }
    let yp = SyncPtr(y.as_mut_ptr());
    let direct = w.as_f32();
    // Tasks are (row block, feature block) pairs, so a narrow layer over many rows (the
    // codec's last convs: few output channels, 10^5 time steps) still keeps every core busy;
    // neither split changes any sum.
    let (n_rb, n_cb) = (n.div_ceil(ROWS), out.div_ceil(COLS));
    (0..n_rb * n_cb)
        .into_par_iter()
        .for_each_init(Vec::new, |wbuf: &mut Vec<f32>, t| {
            let (rb, b) = (t / n_cb, t % n_cb);
            let (i0, i1) = (rb * ROWS, ((rb + 1) * ROWS).min(n));
            let (j0, j1) = (b * COLS, ((b + 1) * COLS).min(out));
            let cols = j1 - j0;
            let wblock: &[f32] = match direct {
                Some(v) => &v[j0 * k..j1 * k],
                None => {
                    wbuf.resize(cols * k, 0.0);
                    w.read(j0 * k, &mut wbuf[..cols * k]);
                    &wbuf[..cols * k]
                }
            };
            // SAFETY: A = rows i0..i1 of x, n×k row-major (rsa k, csa 1; asserted above); B =
            // this block's weights read as k×cols with element (kk, j) at j·k + kk (rsb 1,
            // csb k), wblock holding cols·k elements; C = rows i0..i1, columns j0..j1 of y
            // (rsc out, csc 1), i1 <= n and j1 <= out so every write is inside y, and no other
            // task writes this (row, column) block.
            unsafe { sgemm_block(x, i0..i1, k, wblock.as_ptr(), (1, k), yp, out, j0, cols) };
        });
}

/// `y[i0..i1, j0..j0 + cols] = x[i0..i1, ..] · B` with B (k × cols) read at `b` with strides
/// `(rsb, csb)`: one single-threaded sgemm on a (row block, feature block) task.
///
/// # Safety
/// `x` is n×k row-major with `rows.end <= n`; B's k·cols elements at those strides are
/// readable from `b`; `y` points at an n×out row-major buffer with `j0 + cols <= out`; no
/// other thread touches that block of `y` during the call.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn sgemm_block(
    x: &[f32],
    rows: std::ops::Range<usize>,
    k: usize,
    b: *const f32,
    (rsb, csb): (usize, usize),
    y: SyncPtr,
    out: usize,
    j0: usize,
    cols: usize,
) {
    matrixmultiply::sgemm(
        rows.len(),
        k,
        cols,
        1.0,
        x.as_ptr().add(rows.start * k),
        k as isize,
        1,
        b,
        rsb as isize,
        csb as isize,
        0.0,
        y.ptr().add(rows.start * out + j0),
        out as isize,
        1,
    );
}

/// Below this many rows sgemm would pad them to its 8-row micro-tile and spend up to 8x the
/// FMAs on padding; decode (1..7 rows) takes [`matmul_few_rows`] instead.
pub(super) const SMALL_ROWS: usize = 8;
/// sgemm's k panel (`matrixmultiply` S_KC for f32): the few-rows path sums in the same panels.
pub(super) const KC: usize = 256;
/// Output features packed side by side: per k step eight independent 8-lane FMAs, so the
/// accumulators' dependency chains (4-cycle FMA latency) overlap instead of serialising.
pub(super) const LANES: usize = 64;

/// The same sums as sgemm, bit for bit (checked by `few_rows_match_sgemm_bitwise`): per output,
/// k is cut into `KC` panels; within a panel a fresh accumulator takes one fused multiply-add
/// per k in order, and each panel's sum is added to the output (the first one stored). Each task
/// packs 64 weight rows of one panel transposed (k-major, 64 KiB) and runs every row of x over
/// them, so the weights are streamed once from memory at every batch size below 8.
fn matmul_few_rows<W: WeightRows + ?Sized>(
    x: &[f32],
    n: usize,
    k: usize,
    w: &W,
    out: usize,
    y: &mut [f32],
) {
    let yp = SyncPtr(y.as_mut_ptr());
    let direct = w.as_f32();
    (0..out.div_ceil(LANES)).into_par_iter().for_each_init(
        || (vec![0f32; LANES * KC], vec![0f32; LANES * KC]),
        |(packed, rows), g| {
            let (j0, j1) = (g * LANES, ((g + 1) * LANES).min(out));
            let mut p0 = 0;
            while p0 < k {
                let kl = KC.min(k - p0);
                // Rows past `out` stay zero, so their lanes compute zeros nobody stores.
                rows[..LANES * KC].fill(0.0);
                for l in 0..j1 - j0 {
                    let start = (j0 + l) * k + p0;
                    let dst = &mut rows[l * KC..l * KC + kl];
                    match direct {
                        Some(v) => dst.copy_from_slice(&v[start..start + kl]),
                        None => w.read(start, dst),
                    }
                }
                transpose_panel(rows, kl, packed);
                for i in 0..n {
                    let acc = fma_panel_f32(&x[i * k + p0..i * k + p0 + kl], &packed[..kl * LANES]);
                    // SAFETY: i < n and j0 + l < j1 <= out for every stored lane, so the
                    // indices are inside y (n·out, asserted in `matmul`); features j0..j1
                    // belong to this task.
                    unsafe { store_panel(yp, i * out + j0, &acc[..j1 - j0], p0 == 0) };
                }
                p0 += kl;
            }
        },
    );
}

/// One k panel of one row against a k-major panel (`w[kk·LANES + l]`, `xs.len()` rows of
/// LANES): a fresh accumulator per lane, one fused multiply-add per kk in order, as sgemm's
/// micro-kernel sums one `KC` panel. `widen` turns a stored weight into its exact f32.
#[inline(always)]
fn fma_panel<T: Copy>(xs: &[f32], w: &[T], widen: impl Fn(T) -> f32) -> [f32; LANES] {
    let lines = (LANES * std::mem::size_of::<T>()).div_ceil(64);
    let mut acc = [0f32; LANES];
    for (kk, (&xv, wk)) in xs.iter().zip(w.chunks_exact(LANES)).enumerate() {
        prefetch_ahead(
            w.as_ptr().wrapping_add((kk + PREFETCH_ROWS) * LANES) as *const u8,
            lines,
        );
        for (a, &wv) in acc.iter_mut().zip(wk) {
            *a = xv.mul_add(widen(wv), *a);
        }
    }
    acc
}

/// [`fma_panel`] over f32 weights.
#[inline(always)]
pub(super) fn fma_panel_f32(xs: &[f32], w: &[f32]) -> [f32; LANES] {
    fma_panel(xs, w, |v| v)
}

/// [`fma_panel`] over bf16 weights, widened in registers (a bf16 is the top half of an f32,
/// so widening is exact and is a shift).
#[inline(always)]
pub(super) fn fma_panel_bf16(xs: &[f32], w: &[half::bf16]) -> [f32; LANES] {
    fma_panel(xs, w, |v| f32::from_bits((v.to_bits() as u32) << 16))
}

/// Weight rows (of LANES elements) a decode panel prefetches ahead of its loads: the weight
/// stream is the whole cost of a decode GEMM, and the hardware prefetcher stops at every 4 KiB
/// page.
const PREFETCH_ROWS: usize = 32;

/// Hints `lines` cache lines from `p` into L1; never faults, so `p` may be past the end.
#[inline(always)]
fn prefetch_ahead(p: *const u8, lines: usize) {
    #[cfg(target_arch = "x86_64")]
    for l in 0..lines {
        // SAFETY: prefetch is a hint that does not fault on any address.
        unsafe {
            std::arch::x86_64::_mm_prefetch(
                p.wrapping_add(64 * l) as *const i8,
                std::arch::x86_64::_MM_HINT_T0,
            )
        };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (p, lines);
}

/// Adds one panel's sums to `y[at..at + acc.len()]` (stores them for the first panel), in the
/// order sgemm does.
///
/// # Safety
/// `at + acc.len()` must be inside the buffer behind `y`, and no other thread may touch
/// those elements during the call.
#[inline(always)]
pub(super) unsafe fn store_panel(y: SyncPtr, at: usize, acc: &[f32], first: bool) {
    for (l, &a) in acc.iter().enumerate() {
        let d = y.ptr().add(at + l);
        *d = if first { a } else { *d + a };
    }
}

/// `packed[kk·LANES + l] = rows[l·KC + kk]` for kk < kl: the panel's 64 rows turned k-major.
/// With AVX, 8x8 blocks go through registers (unpack/shuffle/permute) instead of 64 strided
/// scalar stores per block, which would otherwise cost more than the FMAs of a decode step.
fn transpose_panel(rows: &[f32], kl: usize, packed: &mut [f32]) {
    debug_assert!(rows.len() >= LANES * KC && packed.len() >= LANES * KC && kl <= KC);
    let k8 = kl / 8 * 8;
    #[cfg(all(target_arch = "x86_64", target_feature = "avx"))]
    {
        for lg in (0..LANES).step_by(8) {
            for kk0 in (0..k8).step_by(8) {
                // SAFETY: AVX is enabled at compile time (cfg above); loads read
                // rows[(lg + r)·KC + kk0 .. + 8] with lg + r < LANES and kk0 + 8 <= kl <= KC, and
                // stores write packed[(kk0 + c)·LANES + lg .. + 8] with kk0 + c < KC and
                // lg + 8 <= LANES, all inside the LANES·KC buffers (asserted above).
                unsafe { transpose8x8(rows, lg, kk0, packed) };
            }
        }
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "avx")))]
    let k8 = 0;
    for l in 0..LANES {
        for kk in k8..kl {
            packed[kk * LANES + l] = rows[l * KC + kk];
        }
    }
}

#[cfg(all(target_arch = "x86_64", target_feature = "avx"))]
#[inline(always)]
unsafe fn transpose8x8(rows: &[f32], lg: usize, kk0: usize, packed: &mut [f32]) {
    use std::arch::x86_64::*;
    let src = rows.as_ptr();
    let dst = packed.as_mut_ptr();
    let r: [__m256; 8] = std::array::from_fn(|i| _mm256_loadu_ps(src.add((lg + i) * KC + kk0)));
    let t0 = _mm256_unpacklo_ps(r[0], r[1]);
    let t1 = _mm256_unpackhi_ps(r[0], r[1]);
    let t2 = _mm256_unpacklo_ps(r[2], r[3]);
    let t3 = _mm256_unpackhi_ps(r[2], r[3]);
    let t4 = _mm256_unpacklo_ps(r[4], r[5]);
    let t5 = _mm256_unpackhi_ps(r[4], r[5]);
    let t6 = _mm256_unpacklo_ps(r[6], r[7]);
    let t7 = _mm256_unpackhi_ps(r[6], r[7]);
    let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
    let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
    let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
    let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
    let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
    let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
    let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
    let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
    let c = [
        _mm256_permute2f128_ps::<0x20>(u0, u4),
        _mm256_permute2f128_ps::<0x20>(u1, u5),
        _mm256_permute2f128_ps::<0x20>(u2, u6),
        _mm256_permute2f128_ps::<0x20>(u3, u7),
        _mm256_permute2f128_ps::<0x31>(u0, u4),
        _mm256_permute2f128_ps::<0x31>(u1, u5),
        _mm256_permute2f128_ps::<0x31>(u2, u6),
        _mm256_permute2f128_ps::<0x31>(u3, u7),
    ];
    for (i, v) in c.iter().enumerate() {
        _mm256_storeu_ps(dst.add((kk0 + i) * LANES + lg), *v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn few_rows_match_sgemm_bitwise() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(15);
        for &(n, k, out) in &[
            (1, 3072, 64),
            (3, 600, 37),
            (7, 257, 9),
            (2, 8192, 16),
            (1, 5, 3),
        ] {
            let x: Vec<f32> = (0..n * k).map(|_| rng.gen_range(-1.0..1.0)).collect();
            let w: Vec<f32> = (0..out * k).map(|_| rng.gen_range(-1.0..1.0)).collect();
            // The same rows padded to 8 go through sgemm; the first n rows must agree exactly.
            let mut x8 = x.clone();
            x8.resize(8 * k, 0.5);
            let mut want = vec![0f32; 8 * out];
            matmul(&x8, 8, k, w.as_slice(), out, &mut want);
            let mut got = vec![0f32; n * out];
            matmul(&x, n, k, w.as_slice(), out, &mut got);
            for (i, (a, b)) in got.iter().zip(&want[..n * out]).enumerate() {
                assert_eq!(
                    a.to_bits(),
                    b.to_bits(),
                    "n {n} k {k} out {out}: element {i}"
                );
            }
        }
    }
}
