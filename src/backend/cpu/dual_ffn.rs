//! DualFFN routing helpers: gather the rows of one modality into a compact buffer, and add the
//! FFN output back into the residual rows they came from (spec §5.1: each token computes only
//! the FFN of its own modality).

/// `out[i] = x[idx[i]]`, rows of `cols`.
pub fn gather_rows(x: &[f32], cols: usize, idx: &[u32], out: &mut [f32]) {
    for (o, &r) in out.chunks_mut(cols).zip(idx) {
        o.copy_from_slice(&x[r as usize * cols..(r as usize + 1) * cols]);
    }
}

/// `dst[idx[i]] += src[i]`.
pub fn scatter_add_rows(dst: &mut [f32], cols: usize, idx: &[u32], src: &[f32]) {
    for (s, &r) in src.chunks(cols).zip(idx) {
        for (d, v) in dst[r as usize * cols..(r as usize + 1) * cols]
            .iter_mut()
            .zip(s)
        {
            *d += v;
        }
    }
}

/// `dst[idx[i]] = src[i]`.
pub fn scatter_rows(dst: &mut [f32], cols: usize, idx: &[u32], src: &[f32]) {
    for (s, &r) in src.chunks(cols).zip(idx) {
        dst[r as usize * cols..(r as usize + 1) * cols].copy_from_slice(s);
    }
}

/// `out[i] = if mask[i] != 0 { if_set[i] } else { if_clear[i] }`, rows of `cols` (the masked
/// DualFFN strategy: both branches computed on every row, each row keeps its modality's).
pub fn select_rows(mask: &[u32], cols: usize, if_set: &[f32], if_clear: &[f32], out: &mut [f32]) {
    for (i, (o, &m)) in out.chunks_mut(cols).zip(mask).enumerate() {
        let src = if m != 0 { if_set } else { if_clear };
        o.copy_from_slice(&src[i * cols..(i + 1) * cols]);
    }
}
