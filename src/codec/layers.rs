//! Plain CPU building blocks of the codec, on single-batch `[channels, time]` f32 buffers:
//! conv1d (stride, dilation, padding, groups), transposed conv1d, Snake. PyTorch semantics with
//! zero padding (spec: codec.md §3.4). Weight norm is folded at load, so these see plain weights.
//! May use: error, weights.

use rayon::prelude::*;

/// Output length of a conv1d (PyTorch formula).
pub fn conv1d_out_len(t_in: usize, kernel: usize, stride: usize, padding: usize, dilation: usize) -> usize {
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
    assert!(c_in % groups == 0 && c_out % groups == 0, "conv1d: groups");
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
        let b = bias.map_or(0.0, |b| b[co]);
        yrow.iter_mut().for_each(|v| *v = b);
        for ci in 0..cig {
            let xrow = &x[(g * cig + ci) * t_in..(g * cig + ci + 1) * t_in];
            let wrow = &w[(co * cig + ci) * kernel..(co * cig + ci + 1) * kernel];
            for (kk, &wk) in wrow.iter().enumerate() {
                // input index = t*stride + kk*dilation - padding
                let off = kk * dilation;
                // valid t: 0 <= t*stride + off - padding < t_in
                let t_lo = if off >= padding { 0 } else { (padding - off).div_ceil(stride) };
                let t_hi = if t_in + padding > off { ((t_in + padding - off - 1) / stride + 1).min(t_out) } else { 0 };
                if stride == 1 {
                    let base = off as isize - padding as isize;
                    for t in t_lo..t_hi {
                        yrow[t] += wk * xrow[(t as isize + base) as usize];
                    }
                } else {
                    for t in t_lo..t_hi {
                        yrow[t] += wk * xrow[t * stride + off - padding];
                    }
                }
            }
        }
    });
    y
}

/// Output length of a transposed conv1d.
pub fn conv_transpose1d_out_len(t_in: usize, kernel: usize, stride: usize, padding: usize, output_padding: usize) -> usize {
    ((t_in.max(1) - 1) * stride + kernel + output_padding).saturating_sub(2 * padding) * usize::from(t_in > 0)
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
    y.par_chunks_mut(t_out).enumerate().for_each(|(co, yrow)| {
        let b = bias.map_or(0.0, |b| b[co]);
        yrow.iter_mut().for_each(|v| *v = b);
        for ci in 0..c_in {
            let xrow = &x[ci * t_in..(ci + 1) * t_in];
            let wrow = &w[(ci * c_out + co) * kernel..(ci * c_out + co + 1) * kernel];
            for (t, &xv) in xrow.iter().enumerate() {
                // output index = t*stride + kk - padding
                for (kk, &wk) in wrow.iter().enumerate() {
                    let o = t * stride + kk;
                    if o >= padding && o - padding < t_out {
                        yrow[o - padding] += wk * xv;
                    }
                }
            }
        }
    });
    y
}

/// Snake: `x + 1/(alpha + 1e-9) * sin(alpha * x)^2`, per channel alpha (spec: codec.md §3.2).
pub fn snake_inplace(x: &mut [f32], channels: usize, t: usize, alpha: &[f32]) {
    assert_eq!(x.len(), channels * t);
    x.par_chunks_mut(t.max(1)).enumerate().for_each(|(c, row)| {
        let a = alpha[c];
        let inv = 1.0 / (a + 1e-9);
        for v in row.iter_mut() {
            let s = (a * *v).sin();
            *v += inv * s * s;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive_conv1d(x: &[f32], c_in: usize, t_in: usize, w: &[f32], c_out: usize, k: usize, s: usize, p: usize, d: usize, g: usize) -> Vec<f32> {
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
                            acc += w[(co * cig + ci) * k + kk] * x[((co / cog) * cig + ci) * t_in + i as usize];
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
        for &(c_in, c_out, t, k, s, p, d, g) in &[(3, 5, 17, 7, 1, 3, 1, 1), (4, 6, 31, 3, 2, 1, 3, 2), (2, 2, 5, 16, 8, 4, 1, 1), (8, 8, 40, 5, 1, 2, 9, 4)] {
            let x: Vec<f32> = (0..c_in * t).map(|_| r()).collect();
            let w: Vec<f32> = (0..c_out * (c_in / g) * k).map(|_| r()).collect();
            let a = conv1d(&x, c_in, t, &w, c_out, k, None, s, p, d, g);
            let b = naive_conv1d(&x, c_in, t, &w, c_out, k, s, p, d, g);
            assert_eq!(a.len(), b.len());
            for (u, v) in a.iter().zip(&b) {
                assert!((u - v).abs() < 1e-5, "{u} vs {v}");
            }
        }
    }
}
