//! Residual vector quantizer: decode (per-stage codebook gather, `project_out`, summed over
//! stages q = 0, 1, ...) and encode (`project_in`, nearest codeword by the reference's exact
//! fp32 expression `-(|z|^2 - 2 z.e + |e|^2)`, residual update in the wide space).
//! Tensors here are channel-major `[dim, T]`, like the conv path. spec: codec.md §6.
//! May use: error, weights, codec::{config, weights}.

use super::config::CodecConfig;
use super::weights::take_shaped;
use crate::error::{Error, Result};
use crate::weights::WeightMap;
use rayon::prelude::*;

/// One `VectorQuantization` stage.
#[derive(Clone, Debug)]
pub struct RvqStage {
    /// `project_in.weight` [codebook_dim, dim] and bias [codebook_dim].
    pub(crate) in_w: Vec<f32>,
    pub(crate) in_b: Vec<f32>,
    /// `project_out.weight` [dim, codebook_dim] and bias [dim].
    pub(crate) out_w: Vec<f32>,
    pub(crate) out_b: Vec<f32>,
    /// `_codebook.embed` [bins, codebook_dim].
    pub(crate) embed: Vec<f32>,
    /// |e_j|^2 per codeword, summed in index order as `embed.pow(2).sum(0)` does.
    pub(crate) embed_sq: Vec<f32>,
}

/// The 8-stage residual quantizer.
#[derive(Clone, Debug)]
pub struct Rvq {
    /// Width of the quantized latent (1024).
    pub dim: usize,
    pub codebook_dim: usize,
    pub bins: usize,
    pub(crate) stages: Vec<RvqStage>,
}

impl Rvq {
    /// Take `quantizer.vq.layers.{q}.*` out of the map (the training buffers stay behind).
    pub fn from_weights(cfg: &CodecConfig, w: &mut WeightMap) -> Result<Self> {
        let (dim, cd, bins) = (cfg.quantizer_dim(), cfg.codebook_dim, cfg.bins);
        let mut stages = Vec::with_capacity(cfg.n_q);
        for q in 0..cfg.n_q {
            let p = format!("quantizer.vq.layers.{q}");
            let embed = take_shaped(w, &format!("{p}._codebook.embed"), &[bins, cd])?;
            let embed_sq = embed
                .chunks_exact(cd)
                .map(|e| e.iter().map(|x| x * x).sum())
                .collect();
            stages.push(RvqStage {
                in_w: take_shaped(w, &format!("{p}.project_in.weight"), &[cd, dim])?,
                in_b: take_shaped(w, &format!("{p}.project_in.bias"), &[cd])?,
                out_w: take_shaped(w, &format!("{p}.project_out.weight"), &[dim, cd])?,
                out_b: take_shaped(w, &format!("{p}.project_out.bias"), &[dim])?,
                embed,
                embed_sq,
            });
        }
        Ok(Rvq {
            dim,
            codebook_dim: cd,
            bins,
            stages,
        })
    }

    pub fn n_q(&self) -> usize {
        self.stages.len()
    }

    /// `project_out(embed[c])` of stage `q`, added onto `acc` ([dim]).
    fn add_dequantized(&self, q: usize, code: usize, acc: &mut [f32]) {
        let s = &self.stages[q];
        let cd = self.codebook_dim;
        let e = &s.embed[code * cd..(code + 1) * cd];
        for (o, a) in acc.iter_mut().enumerate() {
            let row = &s.out_w[o * cd..(o + 1) * cd];
            let mut v = 0f32;
            for (w, x) in row.iter().zip(e) {
                v += w * x;
            }
            *a += v + s.out_b[o];
        }
    }

    /// Check a code matrix `[n][T]` (n <= n_q, equal row lengths, codes < bins); returns T.
    pub fn check_codes(&self, codes: &[Vec<u32>]) -> Result<usize> {
        if codes.len() > self.n_q() {
            return Err(Error::BadRequest(format!(
                "{} codebooks given, the codec has {}",
                codes.len(),
                self.n_q()
            )));
        }
        let t = codes.first().map_or(0, Vec::len);
        for (q, row) in codes.iter().enumerate() {
            if row.len() != t {
                return Err(Error::BadRequest(format!(
                    "codebook {q} has {} frames, codebook 0 has {t}",
                    row.len()
                )));
            }
            if let Some((i, &c)) = row
                .iter()
                .enumerate()
                .find(|(_, &c)| c as usize >= self.bins)
            {
                return Err(Error::BadRequest(format!(
                    "code {c} at codebook {q}, frame {i} is out of range (bins {})",
                    self.bins
                )));
            }
        }
        Ok(t)
    }

    /// Sum of the dequantized stages for codes `[n][T]` (n <= n_q, used in order) -> `[dim, T]`.
    pub fn decode(&self, codes: &[Vec<u32>]) -> Result<Vec<f32>> {
        let t = self.check_codes(codes)?;
        let mut frames = vec![0f32; t * self.dim];
        frames
            .par_chunks_mut(self.dim.max(1))
            .enumerate()
            .for_each(|(ti, acc)| {
                for (q, row) in codes.iter().enumerate() {
                    self.add_dequantized(q, row[ti] as usize, acc);
                }
            });
        Ok(transpose(&frames, t, self.dim))
    }

    /// Codes `[n_q][T]` for `x` `[dim, T]` with all stages (the reference's `encode()`).
    pub fn encode(&self, x: &[f32], t: usize) -> Result<Vec<Vec<u32>>> {
        Ok(self.encode_with_sum(x, t, self.n_q())?.0)
    }

    /// Codes `[n][T]` with the first `n` stages, and the quantized sum `[dim, T]` (the RVQ
    /// forward output).
    pub fn encode_with_sum(
        &self,
        x: &[f32],
        t: usize,
        n: usize,
    ) -> Result<(Vec<Vec<u32>>, Vec<f32>)> {
        if x.len() != self.dim * t {
            return Err(Error::Shape {
                op: "rvq_encode",
                arg: "x",
                expected: format!("[{}, {t}]", self.dim),
                got: format!("{} values", x.len()),
            });
        }
        let n = n.min(self.n_q());
        let frames = transpose(x, self.dim, t);
        let per_frame: Vec<(Vec<u32>, Vec<f32>)> = frames
            .par_chunks(self.dim.max(1))
            .map(|f| self.encode_frame(f, n))
            .collect();
        let mut codes = vec![Vec::with_capacity(t); n];
        let mut sum = Vec::with_capacity(t * self.dim);
        for (c, s) in per_frame {
            for (q, &v) in c.iter().enumerate() {
                codes[q].push(v);
            }
            sum.extend(s);
        }
        Ok((codes, transpose(&sum, t, self.dim)))
    }

    fn encode_frame(&self, x: &[f32], n: usize) -> (Vec<u32>, Vec<f32>) {
        let (dim, cd) = (self.dim, self.codebook_dim);
        let mut residual = x.to_vec();
        let mut sum = vec![0f32; dim];
        let mut codes = Vec::with_capacity(n);
        let mut z = vec![0f32; cd];
        for (q, s) in self.stages.iter().take(n).enumerate() {
            for (j, zj) in z.iter_mut().enumerate() {
                let row = &s.in_w[j * dim..(j + 1) * dim];
                let mut v = 0f32;
                for (w, r) in row.iter().zip(&residual) {
                    v += w * r;
                }
                *zj = v + s.in_b[j];
            }
            let zsq: f32 = z.iter().map(|v| v * v).sum();
            let mut best = (f32::NEG_INFINITY, 0usize);
            for j in 0..self.bins {
                let e = &s.embed[j * cd..(j + 1) * cd];
                let mut dot = 0f32;
                for (a, b) in z.iter().zip(e) {
                    dot += a * b;
                }
                // The reference expression, evaluated in the same association order.
                let score = -((zsq - 2.0 * dot) + s.embed_sq[j]);
                // Strict `>` keeps the first maximum, as torch's max does on CPU.
                if j == 0 || score > best.0 {
                    best = (score, j);
                }
            }
            codes.push(best.1 as u32);
            let mut u = vec![0f32; dim];
            self.add_dequantized(q, best.1, &mut u);
            for ((r, s), v) in residual.iter_mut().zip(sum.iter_mut()).zip(&u) {
                *r -= v;
                *s += v;
            }
        }
        (codes, sum)
    }
}

/// `[rows, cols]` -> `[cols, rows]`.
pub(crate) fn transpose(x: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut y = vec![0f32; x.len()];
    for r in 0..rows {
        for c in 0..cols {
            y[c * rows + r] = x[r * cols + c];
        }
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::weights::HostTensor;

    fn tiny() -> Rvq {
        let mut cfg = CodecConfig::released();
        cfg.d = 1;
        cfg.semantic_dim = 1;
        cfg.codebook_dim = 1;
        cfg.bins = 3;
        cfg.n_q = 2;
        let mut w = WeightMap::new("t");
        for q in 0..2 {
            let p = format!("quantizer.vq.layers.{q}");
            w.insert(
                format!("{p}.project_in.weight"),
                HostTensor::new(vec![1, 2], vec![1.0, 0.0]),
            );
            w.insert(
                format!("{p}.project_in.bias"),
                HostTensor::new(vec![1], vec![0.0]),
            );
            w.insert(
                format!("{p}.project_out.weight"),
                HostTensor::new(vec![2, 1], vec![1.0, 2.0]),
            );
            w.insert(
                format!("{p}.project_out.bias"),
                HostTensor::new(vec![2], vec![0.0, 0.5]),
            );
            w.insert(
                format!("{p}._codebook.embed"),
                HostTensor::new(vec![3, 1], vec![-1.0, 0.25, 2.0]),
            );
        }
        Rvq::from_weights(&cfg, &mut w).unwrap()
    }

    #[test]
    fn encode_then_decode_is_the_quantized_sum() {
        let r = tiny();
        // x = [[1.9, 0.3], [0, 0]] as [dim=2, T=2]
        let x = vec![1.9, 0.3, 0.0, 0.0];
        let (codes, sum) = r.encode_with_sum(&x, 2, 2).unwrap();
        // frame 0: z=1.9 -> 2.0 (code 2), residual 1.9-2 = -0.1 -> 0.25? |-.1-.25|=.35 < |-.1+1|=.9 -> code 1
        assert_eq!(codes, vec![vec![2, 1], vec![1, 1]]);
        assert_eq!(r.decode(&codes).unwrap(), sum);
        assert!(r.decode(&[vec![3]]).is_err());
        assert!(r.decode(&[vec![0, 1], vec![0]]).is_err());
        assert_eq!(r.decode(&[]).unwrap(), Vec::<f32>::new());
    }
}
