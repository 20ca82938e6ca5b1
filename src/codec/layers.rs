//! Plain CPU building blocks of the codec, on single-batch `[channels, time]` f32 buffers:
//! conv1d (stride, dilation, padding, groups), transposed conv1d, Snake. PyTorch semantics with
//! zero padding (spec: codec.md §3.4). Weight norm is folded at load, so these see plain weights.
//! `conv1d_gemm` (im2col + the CPU sgemm, f32 with FMA in fixed 256-wide k panels) serves every
//! groups = 1 conv of the encoder and decoder; the decode still meets its 1e-5 relative bar
//! (tests/codec_decode.rs). The direct `conv1d` (f64 sums) is kept for grouped convs (HuBERT's
//! positional conv) and transposed convs with kernel != 2 stride; kernel = 2 stride (every
//! decoder upsample) runs as one polyphase GEMM.
//! May use: error, weights, backend (the CPU GEMMs).

use crate::backend::cpu::SyncPtr;
use rayon::prelude::*;

/// Output samples per accumulator tile (8 KiB of f64).
const TILE: usize = 1024;

/// Output length of a conv1d (PyTorch formula).
pub fn conv1d_out_len(
    t_in: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    dilation: usize,
) -> usize {
    let span = dilation * (kernel - 1) + 1;
    if t_in + 2 * padding < span {
        0
    } else {
        (t_in + 2 * padding - span) / stride + 1
    }
}

/// `x` [c_in, t_in], `w` [c_out, c_in/groups, k], `bias` [c_out] -> [c_out, t_out].
#[allow(clippy::too_many_arguments)]
pub fn conv1d(
    x: &[f32],
    c_in: usize,
    t_in: usize,
    w: &[f32],
    c_out: usize,
    kernel: usize,
    bias: Option<&[f32]>,
    stride: usize,
    padding: usize,
    dilation: usize,
    groups: usize,
) -> Vec<f32> {
    assert_eq!(x.len(), c_in * t_in, "conv1d: x");
    assert!(
        c_in.is_multiple_of(groups) && c_out.is_multiple_of(groups),
        "conv1d: groups"
    );
    let cig = c_in / groups;
    let cog = c_out / groups;
    assert_eq!(w.len(), c_out * cig * kernel, "conv1d: w");
    let t_out = conv1d_out_len(t_in, kernel, stride, padding, dilation);
    let mut y = vec![0f32; c_out * t_out];
    if t_out == 0 {
        return y;
    }
    y.par_chunks_mut(t_out).enumerate().for_each(|(co, yrow)| {
        let g = co / cog;
        let b = bias.map_or(0.0, |b| b[co]) as f64;
        // Time tiles keep the accumulator in L1; each output still sums (ci, kk) in the same
        // order whatever the tiling, so results do not depend on position (streaming exactness).
        let mut acc_buf = vec![0f64; TILE.min(t_out)];
        for t0 in (0..t_out).step_by(TILE) {
            let t1 = (t0 + TILE).min(t_out);
            let acc = &mut acc_buf[..t1 - t0];
            acc.fill(0.0);
            for ci in 0..cig {
                let xrow = &x[(g * cig + ci) * t_in..(g * cig + ci + 1) * t_in];
                let wrow = &w[(co * cig + ci) * kernel..(co * cig + ci + 1) * kernel];
                for (kk, &wk) in wrow.iter().enumerate() {
                    // input index = t*stride + kk*dilation - padding
                    let off = kk * dilation;
                    // valid t: 0 <= t*stride + off - padding < t_in
                    let t_lo = if off >= padding {
                        0
                    } else {
                        (padding - off).div_ceil(stride)
                    };
                    let t_hi = if t_in + padding > off {
                        ((t_in + padding - off - 1) / stride + 1).min(t_out)
                    } else {
                        0
                    };
                    let (lo, hi) = (t_lo.max(t0), t_hi.min(t1));
                    if lo >= hi {
                        continue;
                    }
                    let wk = wk as f64;
                    let x0 = lo * stride + off - padding;
                    if stride == 1 {
                        let xs = &xrow[x0..x0 + (hi - lo)];
                        for (a, &xv) in acc[lo - t0..hi - t0].iter_mut().zip(xs) {
                            *a += wk * xv as f64;
                        }
                    } else {
                        let xs = xrow[x0..].iter().step_by(stride);
                        for (a, &xv) in acc[lo - t0..hi - t0].iter_mut().zip(xs) {
                            *a += wk * xv as f64;
                        }
                    }
                }
            }
            for (y, a) in yrow[t0..t1].iter_mut().zip(acc.iter()) {
                *y = (*a + b) as f32;
            }
        }
    });
    y
}

/// conv1d (groups = 1) as im2col + the CPU GEMM (f32, FMA, k summed in fixed panels whatever
/// the time position, so chunked/streamed decodes stay exact). Time is processed in chunks so
/// the column buffer stays bounded.
#[allow(clippy::too_many_arguments)]
pub fn conv1d_gemm(
    x: &[f32],
    c_in: usize,
    t_in: usize,
    w: &[f32],
    c_out: usize,
    kernel: usize,
    bias: Option<&[f32]>,
    stride: usize,
    padding: usize,
    dilation: usize,
) -> Vec<f32> {
    assert_eq!(x.len(), c_in * t_in, "conv1d_gemm: x");
    assert_eq!(w.len(), c_out * c_in * kernel, "conv1d_gemm: w");
    let t_out = conv1d_out_len(t_in, kernel, stride, padding, dilation);
    let mut y = vec![0f32; c_out * t_out];
    if t_out == 0 {
        return y;
    }
    let kk = c_in * kernel;
    // Both the column buffer (chunk x kk) and the GEMM output (chunk x c_out) stay ~16 MiB,
    // whatever the config's channel counts.
    let chunk = (1usize << 22) / kk.max(c_out).max(1);
    let chunk = chunk.max(16).min(t_out);
    let mut cols = vec![0f32; chunk * kk];
    let mut yt = vec![0f32; chunk * c_out];
    let mut t0 = 0;
    while t0 < t_out {
        let n = chunk.min(t_out - t0);
        cols[..n * kk]
            .par_chunks_mut(kk)
            .enumerate()
            .for_each(|(r, row)| {
                let t = t0 + r;
                for ci in 0..c_in {
                    let xr = &x[ci * t_in..(ci + 1) * t_in];
                    for q in 0..kernel {
                        let i = (t * stride + q * dilation) as isize - padding as isize;
                        row[ci * kernel + q] = if i >= 0 && (i as usize) < t_in {
                            xr[i as usize]
                        } else {
                            0.0
                        };
                    }
                }
            });
        crate::backend::cpu::matmul::matmul(&cols[..n * kk], n, kk, w, c_out, &mut yt[..n * c_out]);
        y.par_chunks_mut(t_out).enumerate().for_each(|(co, yrow)| {
            let b = bias.map_or(0.0, |b| b[co]);
            for r in 0..n {
                yrow[t0 + r] = yt[r * c_out + co] + b;
            }
        });
        t0 += n;
    }
    y
}

/// Output length of a transposed conv1d.
pub fn conv_transpose1d_out_len(
    t_in: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    output_padding: usize,
) -> usize {
    ((t_in.max(1) - 1) * stride + kernel + output_padding).saturating_sub(2 * padding)
        * usize::from(t_in > 0)
}

/// `x` [c_in, t_in], `w` [c_in, c_out, k] (PyTorch ConvTranspose1d layout, groups = 1),
/// `bias` [c_out] -> [c_out, t_out].
#[allow(clippy::too_many_arguments)]
pub fn conv_transpose1d(
    x: &[f32],
    c_in: usize,
    t_in: usize,
    w: &[f32],
    c_out: usize,
    kernel: usize,
    bias: Option<&[f32]>,
    stride: usize,
    padding: usize,
    output_padding: usize,
) -> Vec<f32> {
    assert_eq!(x.len(), c_in * t_in, "conv_transpose1d: x");
    assert_eq!(w.len(), c_in * c_out * kernel, "conv_transpose1d: w");
    let t_out = conv_transpose1d_out_len(t_in, kernel, stride, padding, output_padding);
    let mut y = vec![0f32; c_out * t_out];
    if t_out == 0 {
        return y;
    }
    if kernel == 2 * stride {
        conv_transpose_polyphase_gemm(x, c_in, t_in, w, c_out, bias, stride, padding, &mut y);
        return y;
    }
    y.par_chunks_mut(t_out).enumerate().for_each(|(co, yrow)| {
        let b = bias.map_or(0.0, |b| b[co]);
        let mut acc = vec![0f64; yrow.len()];
        for ci in 0..c_in {
            let xrow = &x[ci * t_in..(ci + 1) * t_in];
            let wrow = &w[(ci * c_out + co) * kernel..(ci * c_out + co + 1) * kernel];
            for (t, &xv) in xrow.iter().enumerate() {
                // output index = t*stride + kk - padding
                for (kk, &wk) in wrow.iter().enumerate() {
                    let o = t * stride + kk;
                    if o >= padding && o - padding < t_out {
                        acc[o - padding] += wk as f64 * xv as f64;
                    }
                }
            }
        }
        for (y, a) in yrow.iter_mut().zip(&acc) {
            *y = (*a + b as f64) as f32;
        }
    });
    y
}

/// Transposed conv with kernel 2s (spec §3.4) as one GEMM over all s phases. With n = o + p,
/// q = n / s, r = n % s: `y[co, o] = sum_ci W[ci,co,r+s] x[ci,q-1] + W[ci,co,r] x[ci,q]`. So a
/// column row `[x[:, q-1], x[:, q]]` (2 c_in wide, zero outside the input) times a weight
/// matrix with one row per (r, co) gives every output whose input index is q, for all phases
/// at once: rows = input positions, k = 2 c_in, features = s c_out.
///
/// The product is an f64 GEMM (`matrixmultiply::dgemm`): an f32 one put the decode at 1.2e-5
/// relative of the reference, over the 1e-5 bar, while f64 sums keep the upsamplers as exact
/// as the direct f64 loop they replace. dgemm sums k in fixed panels whatever the row, so a
/// chunked (streamed) decode gives the same samples.
#[allow(clippy::too_many_arguments)]
fn conv_transpose_polyphase_gemm(
    x: &[f32],
    c_in: usize,
    t_in: usize,
    w: &[f32],
    c_out: usize,
    bias: Option<&[f32]>,
    s: usize,
    p: usize,
    y: &mut [f32],
) {
    let t_out = y.len() / c_out;
    let k = 2 * s;
    let kk = 2 * c_in;
    let feats = s * c_out;
    // Weight rows (r, co): [W[.., co, r + s] ; W[.., co, r]] matching the column layout.
    let mut wm = vec![0f64; feats * kk];
    wm.par_chunks_mut(kk).enumerate().for_each(|(f, row)| {
        let (r, co) = (f / c_out, f % c_out);
        for ci in 0..c_in {
            let base = (ci * c_out + co) * k;
            row[ci] = w[base + r + s] as f64;
            row[c_in + ci] = w[base + r] as f64;
        }
    });
    // Input positions q that reach an output: q in [p / s, (p + t_out - 1) / s].
    let (q_lo, q_hi) = (p / s, (p + t_out - 1) / s + 1);
    // Columns (chunk x kk) and GEMM output (chunk x feats) both stay ~16 MiB of f64.
    let chunk = ((1usize << 21) / kk.max(feats)).max(16).min(q_hi - q_lo);
    let mut cols = vec![0f64; chunk * kk];
    let mut yt = vec![0f64; chunk * feats];
    let mut q0 = q_lo;
    while q0 < q_hi {
        let n = chunk.min(q_hi - q0);
        cols[..n * kk]
            .par_chunks_mut(kk)
            .enumerate()
            .for_each(|(i, row)| {
                let q = q0 + i;
                for ci in 0..c_in {
                    let xr = &x[ci * t_in..(ci + 1) * t_in];
                    row[ci] = if q >= 1 && q - 1 < t_in {
                        xr[q - 1] as f64
                    } else {
                        0.0
                    };
                    row[c_in + ci] = if q < t_in { xr[q] as f64 } else { 0.0 };
                }
            });
        dgemm_rows_by_features(&cols[..n * kk], n, kk, &wm, feats, &mut yt[..n * feats]);
        // Scatter: output o = q s + r - p, one channel row per task.
        let yt = &yt;
        y.par_chunks_mut(t_out).enumerate().for_each(|(co, yrow)| {
            let b = bias.map_or(0.0, |b| b[co]) as f64;
            for i in 0..n {
                let q = q0 + i;
                for r in 0..s {
                    let n_idx = q * s + r;
                    if n_idx >= p && n_idx - p < t_out {
                        yrow[n_idx - p] = (yt[i * feats + r * c_out + co] + b) as f32;
                    }
                }
            }
        });
        q0 += n;
    }
}

/// `c[n, f] = a[n, k] · b[f, k]ᵀ` in f64, as (row block, feature block) tasks of one
/// single-threaded dgemm each, so a few rows with many features (the first upsampler) and
/// many rows with few features (the last) both keep every core busy. The split changes no sum.
fn dgemm_rows_by_features(a: &[f64], n: usize, k: usize, b: &[f64], f: usize, c: &mut [f64]) {
    const ROWS: usize = 256;
    const FEATS: usize = 64;
    let (n_rb, n_fb) = (n.div_ceil(ROWS), f.div_ceil(FEATS));
    let cp = SyncPtr(c.as_mut_ptr());
    (0..n_rb * n_fb).into_par_iter().for_each(|t| {
        let (r0, f0) = ((t / n_fb) * ROWS, (t % n_fb) * FEATS);
        let (m, nf) = (ROWS.min(n - r0), FEATS.min(f - f0));
        // SAFETY: the (row, feature) blocks are disjoint; a and b are read in bounds
        // (rows r0..r0+m of a, rows f0..f0+nf of b, each k long) and c's block is
        // rows r0..r0+m, columns f0..f0+nf of the n x f row-major output.
        unsafe {
            matrixmultiply::dgemm(
                m,
                k,
                nf,
                1.0,
                a.as_ptr().add(r0 * k),
                k as isize,
                1,
                b.as_ptr().add(f0 * k),
                1,
                k as isize,
                0.0,
                cp.ptr().add(r0 * f + f0),
                f as isize,
                1,
            );
        }
    });
}

/// Snake: `x + 1/(alpha + 1e-9) * sin(alpha * x)^2`, per channel alpha (spec: codec.md §3.2).
pub fn snake_inplace(x: &mut [f32], channels: usize, t: usize, alpha: &[f32]) {
    assert_eq!(x.len(), channels * t);
    x.par_chunks_mut(t.max(1)).enumerate().for_each(|(c, row)| {
        let a = alpha[c];
        let inv = 1.0 / (a + 1e-9);
        for v in row.iter_mut() {
            // Same association as the reference: x + inv * sin(a x)^2.
            let s = (a * *v).sin();
            *v += inv * (s * s);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::too_many_arguments)]
    fn naive_conv1d(
        x: &[f32],
        c_in: usize,
        t_in: usize,
        w: &[f32],
        c_out: usize,
        k: usize,
        s: usize,
        p: usize,
        d: usize,
        g: usize,
    ) -> Vec<f32> {
        let t_out = conv1d_out_len(t_in, k, s, p, d);
        let (cig, cog) = (c_in / g, c_out / g);
        let mut y = vec![0f32; c_out * t_out];
        for co in 0..c_out {
            for t in 0..t_out {
                let mut acc = 0f32;
                for ci in 0..cig {
                    for kk in 0..k {
                        let i = (t * s + kk * d) as isize - p as isize;
                        if i >= 0 && (i as usize) < t_in {
                            acc += w[(co * cig + ci) * k + kk]
                                * x[((co / cog) * cig + ci) * t_in + i as usize];
                        }
                    }
                }
                y[co * t_out + t] = acc;
            }
        }
        y
    }

    #[test]
    fn conv1d_matches_naive() {
        let mut seed = 1u32;
        let mut r = || {
            seed = seed.wrapping_mul(1664525).wrapping_add(1013904223);
            (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        };
        for &(c_in, c_out, t, k, s, p, d, g) in &[
            (3, 5, 17, 7, 1, 3, 1, 1),
            (4, 6, 31, 3, 2, 1, 3, 2),
            (2, 2, 5, 16, 8, 4, 1, 1),
            (8, 8, 40, 5, 1, 2, 9, 4),
        ] {
            let x: Vec<f32> = (0..c_in * t).map(|_| r()).collect();
            let w: Vec<f32> = (0..c_out * (c_in / g) * k).map(|_| r()).collect();
            let a = conv1d(&x, c_in, t, &w, c_out, k, None, s, p, d, g);
            let b = naive_conv1d(&x, c_in, t, &w, c_out, k, s, p, d, g);
            assert_eq!(a.len(), b.len());
            for (u, v) in a.iter().zip(&b) {
                assert!((u - v).abs() < 1e-5, "{u} vs {v}");
            }
            if g == 1 {
                let bias: Vec<f32> = (0..c_out).map(|_| r()).collect();
                let c = conv1d_gemm(&x, c_in, t, &w, c_out, k, Some(&bias), s, p, d);
                assert_eq!(c.len(), b.len());
                for (i, (u, v)) in c.iter().zip(&b).enumerate() {
                    let v = v + bias[i / b.len().div_ceil(c_out).max(1)];
                    assert!((u - v).abs() < 1e-5, "gemm {u} vs {v}");
                }
            }
        }
    }

    /// Wide enough that the polyphase GEMM takes several column chunks; a prefix of the input
    /// gives bit-identical samples wherever its outputs do not reach past the prefix (what the
    /// streamed decode relies on).
    #[test]
    fn conv_transpose1d_polyphase_chunks_and_prefixes_are_exact() {
        let mut seed = 11u32;
        let mut r = || {
            seed = seed.wrapping_mul(1664525).wrapping_add(1013904223);
            (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        };
        let (c_in, c_out, t, s) = (1024usize, 3usize, 2300usize, 2usize);
        let (p, op) = (1, 0);
        let x: Vec<f32> = (0..c_in * t).map(|_| r()).collect();
        let w: Vec<f32> = (0..c_in * c_out * 2 * s).map(|_| r() * 0.05).collect();
        let full = conv_transpose1d(&x, c_in, t, &w, c_out, 2 * s, None, s, p, op);
        let t_out = s * t;
        // f64 scatter reference on a few channels/positions.
        for co in 0..c_out {
            for o in (0..t_out).step_by(97).chain([t_out - 1]) {
                let mut want = 0f64;
                for ci in 0..c_in {
                    let q = (o + p) / s;
                    for m in q.saturating_sub(1)..(q + 1).min(t) {
                        let kk = o as isize + p as isize - (s * m) as isize;
                        if (0..2 * s as isize).contains(&kk) {
                            want += w[(ci * c_out + co) * 2 * s + kk as usize] as f64
                                * x[ci * t + m] as f64;
                        }
                    }
                }
                let got = full[co * t_out + o] as f64;
                assert!((got - want).abs() < 1e-6, "co {co} o {o}: {got} vs {want}");
            }
        }
        let t1 = 1500;
        let xp: Vec<f32> = (0..c_in)
            .flat_map(|ci| x[ci * t..ci * t + t1].to_vec())
            .collect();
        let part = conv_transpose1d(&xp, c_in, t1, &w, c_out, 2 * s, None, s, p, op);
        let t1_out = s * t1;
        for co in 0..c_out {
            for o in 0..t1_out {
                if (o + p) / s < t1 {
                    assert_eq!(
                        part[co * t1_out + o].to_bits(),
                        full[co * t_out + o].to_bits(),
                        "co {co} o {o}"
                    );
                }
            }
        }
    }

    #[test]
    fn conv_transpose1d_fast_path_matches_general() {
        let mut seed = 7u32;
        let mut r = || {
            seed = seed.wrapping_mul(1664525).wrapping_add(1013904223);
            (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        };
        for &(c_in, c_out, t, s) in &[
            (3usize, 2usize, 5usize, 8usize),
            (4, 3, 7, 5),
            (2, 2, 9, 3),
            (5, 4, 1, 2),
            // One input channel, many outputs: the chunk is bounded by the output width.
            (1, 300, 40, 8),
            (3, 3, 11, 4),
        ] {
            let x: Vec<f32> = (0..c_in * t).map(|_| r()).collect();
            let w: Vec<f32> = (0..c_in * c_out * 2 * s).map(|_| r()).collect();
            let b: Vec<f32> = (0..c_out).map(|_| r()).collect();
            let (p, op) = (s.div_ceil(2), s % 2);
            let fast = conv_transpose1d(&x, c_in, t, &w, c_out, 2 * s, Some(&b), s, p, op);
            assert_eq!(fast.len(), c_out * s * t);
            // Scatter form, straight from the definition.
            let t_out = s * t;
            let mut want = vec![0f32; c_out * t_out];
            for co in 0..c_out {
                for o in 0..t_out {
                    want[co * t_out + o] = b[co];
                }
                for ci in 0..c_in {
                    for m in 0..t {
                        for kk in 0..2 * s {
                            let n = (s * m + kk) as isize - p as isize;
                            if n >= 0 && (n as usize) < t_out {
                                want[co * t_out + n as usize] +=
                                    w[(ci * c_out + co) * 2 * s + kk] * x[ci * t + m];
                            }
                        }
                    }
                }
            }
            for (u, v) in fast.iter().zip(&want) {
                assert!((u - v).abs() < 1e-5, "{u} vs {v}");
            }
        }
    }
}
