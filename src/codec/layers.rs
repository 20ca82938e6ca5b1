//! Plain CPU building blocks of the codec, on single-batch `[channels, time]` f32 buffers:
//! conv1d (stride, dilation, padding, groups), transposed conv1d, Snake. PyTorch semantics with
//! zero padding (spec: codec.md §3.4). Weight norm is folded at load, so these see plain weights.
//! `conv1d_gemm` (im2col + the CPU sgemm, f32 with FMA in fixed 256-wide k panels) serves every
//! groups = 1 conv of the encoder and decoder; the decode still meets its 1e-5 relative bar
//! (tests/codec_decode.rs). The direct `conv1d` (f64 sums) is kept for grouped convs (HuBERT's
//! positional conv) and the transposed conv sums in f64 over c_in.
//! May use: error, weights.

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
    let chunk = (1usize << 22) / kk.max(1);
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
        y.par_chunks_mut(t_out).enumerate().for_each(|(co, yrow)| {
            conv_transpose_polyphase_row(x, c_in, t_in, w, c_out, co, stride, padding, yrow);
            let b = bias.map_or(0.0, |b| b[co]);
            yrow.iter_mut().for_each(|v| *v += b);
        });
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

/// One output row of a transposed conv with kernel 2s (spec §3.4): with n = o + p,
/// q = n / s, r = n % s, `y[o] = sum_ci W[ci,co,r+s] x[ci,q-1] + W[ci,co,r] x[ci,q]`, summed in
/// f64 over ci in order (the same order for every o, so chunked decodes stay exact).
#[allow(clippy::too_many_arguments)]
fn conv_transpose_polyphase_row(
    x: &[f32],
    c_in: usize,
    t_in: usize,
    w: &[f32],
    c_out: usize,
    co: usize,
    s: usize,
    p: usize,
    yrow: &mut [f32],
) {
    let t_out = yrow.len();
    let k = 2 * s;
    let mut acc_buf = vec![0f64; TILE.min(t_out)];
    for t0 in (0..t_out).step_by(TILE) {
        let t1 = (t0 + TILE).min(t_out);
        let acc = &mut acc_buf[..t1 - t0];
        acc.fill(0.0);
        for ci in 0..c_in {
            let xrow = &x[ci * t_in..(ci + 1) * t_in];
            let wrow = &w[(ci * c_out + co) * k..(ci * c_out + co + 1) * k];
            for r in 0..s {
                let (w_lo, w_hi) = (wrow[r] as f64, wrow[r + s] as f64);
                // First o >= t0 with (o + p) % s == r.
                let o_start = t0 + (r + s - (t0 + p) % s) % s;
                for o in (o_start..t1).step_by(s) {
                    let q = (o + p) / s;
                    let mut v = 0f64;
                    if q >= 1 && q - 1 < t_in {
                        v += w_hi * xrow[q - 1] as f64;
                    }
                    if q < t_in {
                        v += w_lo * xrow[q] as f64;
                    }
                    acc[o - t0] += v;
                }
            }
        }
        for (y, a) in yrow[t0..t1].iter_mut().zip(acc.iter()) {
            *y = *a as f32;
        }
    }
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
