//! Loading a codec folder into a `WeightMap`: `config.json` plus `model.safetensors` or the
//! released `model.pth`; HuBERT from `semantic_model.*` inside it or from a separate folder
//! (`hubert/model.safetensors`). Weight norm is folded once here, so every consumer sees plain
//! `X.weight` tensors (spec: codec.md §3.1, §8.1).
//! May use: error, weights, codec::pth.

use super::config::CodecConfig;
use super::pth;
use crate::error::{Error, Result};
use crate::weights::{HostTensor, WeightMap};
use std::path::{Path, PathBuf};

/// Prefix of the HuBERT tensors in the codec's state dict.
pub const HUBERT_PREFIX: &str = "semantic_model.";

/// Read one weight file by its extension: `.pth`/`.pt`/`.bin` (torch zip) or `.safetensors`.
pub fn read_weight_file(path: &Path) -> Result<WeightMap> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("safetensors") => WeightMap::from_safetensors(path),
        Some("pth") | Some("pt") | Some("bin") => pth::read_pth(path),
        _ => Err(Error::checkpoint(
            path,
            "<file>",
            "expected a .safetensors or .pth file",
        )),
    }
}

/// The weight file of a codec folder: `model.safetensors` if present (no pickle to interpret),
/// else `model.pth`.
pub fn codec_weight_file(dir: &Path) -> Result<PathBuf> {
    for name in ["model.safetensors", "model.pth"] {
        let p = dir.join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    Err(Error::checkpoint(
        dir,
        "<files>",
        "no model.safetensors or model.pth in the codec folder",
    ))
}

/// Load `dir/config.json` and the codec weights, with weight norm folded. HuBERT comes from
/// `semantic_model.*` when the checkpoint has it, else from `dir/hubert/model.safetensors`
/// (re-keyed under `semantic_model.`); if neither exists the map simply lacks it, and only
/// encoding will fail (naming the missing key).
pub fn load_codec_dir(dir: &Path) -> Result<(CodecConfig, WeightMap)> {
    let cfg = CodecConfig::from_file(&dir.join("config.json"))?;
    let mut w = read_weight_file(&codec_weight_file(dir)?)?;
    if !w.keys().any(|k| k.starts_with(HUBERT_PREFIX)) {
        let hubert = dir.join("hubert").join("model.safetensors");
        if hubert.is_file() {
            merge_hubert(&mut w, WeightMap::from_safetensors(&hubert)?);
        }
    }
    fold_weight_norm(&mut w)?;
    Ok((cfg, w))
}

/// Add a stand-alone HuBERT state dict (`HubertModel.save_pretrained` keys) under the prefix.
pub fn merge_hubert(w: &mut WeightMap, hubert: WeightMap) {
    let keys: Vec<String> = hubert.keys().cloned().collect();
    let mut hubert = hubert;
    for k in keys {
        if let Some(t) = hubert.remove(&k) {
            w.insert(format!("{HUBERT_PREFIX}{k}"), t);
        }
    }
}

/// Replace every weight-norm pair by its folded weight:
/// `X.weight_g`/`X.weight_v` (legacy) or `X.parametrizations.weight.original0/1` (new API) ->
/// `X.weight = g * v / ||v||`, the norm taken over every axis but the kept one. The kept axis is
/// the one where g is not 1 (axis 0 for DAC convs, i.e. the INPUT channel of a ConvTranspose1d;
/// axis 2 for HuBERT's positional conv). No epsilon, as the reference. Folded in f64.
pub fn fold_weight_norm(w: &mut WeightMap) -> Result<()> {
    let pairs: Vec<(String, String, String)> = w
        .keys()
        .filter_map(|k| {
            if let Some(base) = k.strip_suffix(".weight_g") {
                Some((base.to_string(), k.clone(), format!("{base}.weight_v")))
            } else {
                k.strip_suffix(".parametrizations.weight.original0")
                    .map(|base| {
                        (
                            base.to_string(),
                            k.clone(),
                            format!("{base}.parametrizations.weight.original1"),
                        )
                    })
            }
        })
        .collect();
    for (base, gk, vk) in pairs {
        let src = w.source().to_path_buf();
        let g = w
            .remove(&gk)
            .ok_or_else(|| Error::checkpoint(&src, &gk, "missing tensor"))?;
        let v = w.remove(&vk).ok_or_else(|| {
            Error::checkpoint(&src, &vk, "weight-norm magnitude without its direction")
        })?;
        let folded = fold_one(&src, &gk, &g, &v)?;
        w.insert(format!("{base}.weight"), folded);
    }
    Ok(())
}

fn fold_one(src: &Path, key: &str, g: &HostTensor, v: &HostTensor) -> Result<HostTensor> {
    let bad = |r: String| Error::checkpoint(src, key, r);
    if g.shape.len() != v.shape.len() || v.shape.is_empty() {
        return Err(bad(format!(
            "g {:?} and v {:?} ranks differ",
            g.shape, v.shape
        )));
    }
    let non_one: Vec<usize> = (0..g.shape.len()).filter(|&a| g.shape[a] != 1).collect();
    let axis = match non_one.as_slice() {
        [a] => *a,
        // g all ones: the kept axis has size 1 in v too; axis 0 is the legacy default.
        [] => (0..v.shape.len()).find(|&a| v.shape[a] == 1).unwrap_or(0),
        _ => {
            return Err(bad(format!(
                "g {:?} has more than one non-unit axis",
                g.shape
            )))
        }
    };
    if g.shape[axis] != v.shape[axis] || g.numel() != v.shape[axis] {
        return Err(bad(format!(
            "g {:?} does not match v {:?} on axis {axis}",
            g.shape, v.shape
        )));
    }
    let n = v.shape[axis];
    let inner: usize = v.shape[axis + 1..].iter().product();
    let outer: usize = v.shape[..axis].iter().product();
    let mut sq = vec![0f64; n];
    for o in 0..outer {
        let block = &v.data[o * n * inner..(o + 1) * n * inner];
        for (acc, row) in sq.iter_mut().zip(block.chunks_exact(inner.max(1))) {
            *acc += row.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>();
        }
    }
    // As torch's `v * (g / norm)` in fp32: one rounding for the norm, one for the scale.
    let scale: Vec<f32> = (0..n).map(|a| g.data[a] / sq[a].sqrt() as f32).collect();
    let mut out = v.data.clone();
    for o in 0..outer {
        for (a, &sc) in scale.iter().enumerate() {
            for x in &mut out[(o * n + a) * inner..(o * n + a + 1) * inner] {
                *x *= sc;
            }
        }
    }
    Ok(HostTensor::new(v.shape.clone(), out))
}

/// Take (remove) `key` from the map after checking its shape, returning its data.
pub fn take_shaped(w: &mut WeightMap, key: &str, shape: &[usize]) -> Result<Vec<f32>> {
    w.get_shaped(key, shape)?;
    let src = w.source().to_path_buf();
    w.remove(key)
        .map(|t| t.data)
        .ok_or_else(|| Error::checkpoint(src, key, "missing tensor"))
}

/// Random decode-path weights of `cfg`'s real shapes (already folded): the RVQ stages,
/// `fc_post2` and `decoder_2`, for benchmarks. Uniform weights scaled by 1/sqrt(fan_in) keep
/// activations O(1); Snake alphas lie in [0.5, 2] as trained ones do.
pub fn random_decode_weights(cfg: &CodecConfig, seed: u64) -> WeightMap {
    use rand::SeedableRng;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut w = WeightMap::new("<random>");
    let (q, cd, bins) = (cfg.quantizer_dim(), cfg.codebook_dim, cfg.bins);
    for i in 0..cfg.n_q {
        let p = format!("quantizer.vq.layers.{i}");
        put_random(
            &mut w,
            &mut rng,
            format!("{p}.project_in.weight"),
            vec![cd, q],
            q,
        );
        put_random(
            &mut w,
            &mut rng,
            format!("{p}.project_in.bias"),
            vec![cd],
            q,
        );
        put_random(
            &mut w,
            &mut rng,
            format!("{p}.project_out.weight"),
            vec![q, cd],
            cd,
        );
        put_random(
            &mut w,
            &mut rng,
            format!("{p}.project_out.bias"),
            vec![q],
            cd,
        );
        put_random(
            &mut w,
            &mut rng,
            format!("{p}._codebook.embed"),
            vec![bins, cd],
            1,
        );
    }
    put_random(
        &mut w,
        &mut rng,
        "fc_post2.weight".into(),
        vec![cfg.d, q],
        q,
    );
    put_random(&mut w, &mut rng, "fc_post2.bias".into(), vec![cfg.d], q);
    let conv = |w: &mut WeightMap,
                rng: &mut rand_chacha::ChaCha8Rng,
                p: String,
                ci: usize,
                co: usize,
                k: usize| {
        put_random(w, rng, format!("{p}.weight"), vec![co, ci, k], ci * k);
        put_random(w, rng, format!("{p}.bias"), vec![co], ci * k);
    };
    conv(
        &mut w,
        &mut rng,
        "decoder_2.model.0".into(),
        cfg.d,
        cfg.decoder_channels,
        7,
    );
    let mut c = cfg.decoder_channels;
    for (i, &s) in cfg.ratios.iter().enumerate() {
        let p = format!("decoder_2.model.{}", i + 1);
        put_alpha(&mut w, &mut rng, format!("{p}.block.0.alpha"), c);
        put_random(
            &mut w,
            &mut rng,
            format!("{p}.block.1.weight"),
            vec![c, c / 2, 2 * s],
            c * 2,
        );
        put_random(
            &mut w,
            &mut rng,
            format!("{p}.block.1.bias"),
            vec![c / 2],
            c * 2,
        );
        c /= 2;
        for r in 0..3 {
            let u = format!("{p}.block.{}", r + 2);
            put_alpha(&mut w, &mut rng, format!("{u}.block.0.alpha"), c);
            conv(&mut w, &mut rng, format!("{u}.block.1"), c, c, 7);
            put_alpha(&mut w, &mut rng, format!("{u}.block.2.alpha"), c);
            conv(&mut w, &mut rng, format!("{u}.block.3"), c, c, 1);
        }
    }
    let n = cfg.ratios.len();
    put_alpha(
        &mut w,
        &mut rng,
        format!("decoder_2.model.{}.alpha", n + 1),
        c,
    );
    conv(
        &mut w,
        &mut rng,
        format!("decoder_2.model.{}", n + 2),
        c,
        1,
        7,
    );
    w
}

fn put_random(
    w: &mut WeightMap,
    rng: &mut rand_chacha::ChaCha8Rng,
    key: String,
    shape: Vec<usize>,
    fan_in: usize,
) {
    use rand::Rng;
    let a = (3.0 / fan_in.max(1) as f32).sqrt();
    let n = shape.iter().product();
    let data = (0..n).map(|_| rng.gen_range(-a..a)).collect();
    w.insert(key, HostTensor::new(shape, data));
}

fn put_alpha(w: &mut WeightMap, rng: &mut rand_chacha::ChaCha8Rng, key: String, ch: usize) {
    use rand::Rng;
    let data = (0..ch).map(|_| rng.gen_range(0.5f32..2.0)).collect();
    w.insert(key, HostTensor::new(vec![1, ch, 1], data));
}

/// Released-shape random weights for the encode side (acoustic encoder, HuBERT-base, semantic
/// encoder, fc_prior, RVQ), already folded, for benchmarks (`higgs bench --codec`). Uniform
/// weights scaled by 1/sqrt(fan_in); norms are identity.
pub fn random_encode_weights(cfg: &CodecConfig, seed: u64) -> WeightMap {
    let mut w = WeightMap::new("random");
    let mut seed = seed;
    let mut put = |w: &mut WeightMap, key: String, shape: Vec<usize>| {
        let n: usize = shape.iter().product();
        let fan_in = if shape.len() > 1 {
            shape[1..].iter().product::<usize>()
        } else {
            1
        };
        let s = 1.0 / (fan_in as f32).sqrt();
        let data = (0..n)
            .map(|_| {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 2.0 * s
            })
            .collect();
        w.insert(key, HostTensor::new(shape, data));
    };
    let conv = |w: &mut WeightMap,
                put: &mut dyn FnMut(&mut WeightMap, String, Vec<usize>),
                p: &str,
                co: usize,
                ci: usize,
                k: usize| {
        put(w, format!("{p}.weight"), vec![co, ci, k]);
        put(w, format!("{p}.bias"), vec![co]);
    };
    let mut width = 64;
    conv(&mut w, &mut put, "encoder.block.0", width, 1, 7);
    for (i, &s) in cfg.ratios.iter().enumerate() {
        let p = format!("encoder.block.{}", i + 1);
        for r in 0..3 {
            put(
                &mut w,
                format!("{p}.block.{r}.block.0.alpha"),
                vec![1, width, 1],
            );
            conv(
                &mut w,
                &mut put,
                &format!("{p}.block.{r}.block.1"),
                width,
                width,
                7,
            );
            put(
                &mut w,
                format!("{p}.block.{r}.block.2.alpha"),
                vec![1, width, 1],
            );
            conv(
                &mut w,
                &mut put,
                &format!("{p}.block.{r}.block.3"),
                width,
                width,
                1,
            );
        }
        put(&mut w, format!("{p}.block.3.alpha"), vec![1, width, 1]);
        conv(
            &mut w,
            &mut put,
            &format!("{p}.block.4"),
            2 * width,
            width,
            2 * s,
        );
        width *= 2;
    }
    put(&mut w, "encoder.block.6.alpha".into(), vec![1, width, 1]);
    conv(&mut w, &mut put, "encoder.block.7", 256, width, 3);
    let h = "semantic_model.";
    let mut ci = 1;
    for (i, &k) in [10usize, 3, 3, 3, 3, 2, 2].iter().enumerate() {
        put(
            &mut w,
            format!("{h}feature_extractor.conv_layers.{i}.conv.weight"),
            vec![512, ci, k],
        );
        ci = 512;
    }
    for n in [
        "feature_extractor.conv_layers.0.layer_norm",
        "feature_projection.layer_norm",
    ] {
        put(&mut w, format!("{h}{n}.weight"), vec![512]);
        put(&mut w, format!("{h}{n}.bias"), vec![512]);
    }
    put(
        &mut w,
        format!("{h}feature_projection.projection.weight"),
        vec![768, 512],
    );
    put(
        &mut w,
        format!("{h}feature_projection.projection.bias"),
        vec![768],
    );
    conv(
        &mut w,
        &mut put,
        &format!("{h}encoder.pos_conv_embed.conv"),
        768,
        48,
        128,
    );
    let lin = |w: &mut WeightMap,
               put: &mut dyn FnMut(&mut WeightMap, String, Vec<usize>),
               p: String,
               o: usize,
               i: usize| {
        put(w, format!("{p}.weight"), vec![o, i]);
        put(w, format!("{p}.bias"), vec![o]);
    };
    lin(&mut w, &mut put, format!("{h}encoder.layer_norm"), 768, 1);
    w.insert(
        format!("{h}encoder.layer_norm.weight"),
        HostTensor::new(vec![768], vec![1.0; 768]),
    );
    for l in 0..12 {
        let p = format!("{h}encoder.layers.{l}.");
        for n in ["q_proj", "k_proj", "v_proj", "out_proj"] {
            lin(&mut w, &mut put, format!("{p}attention.{n}"), 768, 768);
        }
        for n in ["layer_norm", "final_layer_norm"] {
            w.insert(
                format!("{p}{n}.weight"),
                HostTensor::new(vec![768], vec![1.0; 768]),
            );
            w.insert(
                format!("{p}{n}.bias"),
                HostTensor::new(vec![768], vec![0.0; 768]),
            );
        }
        lin(
            &mut w,
            &mut put,
            format!("{p}feed_forward.intermediate_dense"),
            3072,
            768,
        );
        lin(
            &mut w,
            &mut put,
            format!("{p}feed_forward.output_dense"),
            768,
            3072,
        );
    }
    let s = "encoder_semantic.";
    put(&mut w, format!("{s}conv.conv.weight"), vec![768, 768, 3]);
    for b in 0..2 {
        for r in 0..2 {
            put(
                &mut w,
                format!("{s}conv_blocks.{b}.res_units.{r}.conv1.conv.weight"),
                vec![768, 768, 3],
            );
            put(
                &mut w,
                format!("{s}conv_blocks.{b}.res_units.{r}.conv2.weight"),
                vec![768, 768, 1],
            );
        }
        conv(
            &mut w,
            &mut put,
            &format!("{s}conv_blocks.{b}.conv.conv"),
            768,
            768,
            3,
        );
    }
    lin(&mut w, &mut put, "fc_prior".into(), 1024, 1024);
    for q in 0..8 {
        let p = format!("quantizer.vq.layers.{q}");
        lin(&mut w, &mut put, format!("{p}.project_in"), 64, 1024);
        lin(&mut w, &mut put, format!("{p}.project_out"), 1024, 64);
        put(&mut w, format!("{p}._codebook.embed"), vec![1024, 64]);
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_on_the_axis_where_g_is_not_one() {
        let mut w = WeightMap::new("t");
        // ConvTranspose1d-like v [2 in, 1 out, 2 k]: one norm per input channel (axis 0).
        w.insert(
            "a.weight_g",
            HostTensor::new(vec![2, 1, 1], vec![1.0, 10.0]),
        );
        w.insert(
            "a.weight_v",
            HostTensor::new(vec![2, 1, 2], vec![3.0, 4.0, 0.0, 2.0]),
        );
        // pos-conv-like v [1, 2, 2] with g [1, 1, 2]: one norm per tap (axis 2).
        w.insert(
            "b.parametrizations.weight.original0",
            HostTensor::new(vec![1, 1, 2], vec![2.0, 1.0]),
        );
        w.insert(
            "b.parametrizations.weight.original1",
            HostTensor::new(vec![1, 2, 2], vec![3.0, 1.0, 4.0, 0.0]),
        );
        fold_weight_norm(&mut w).unwrap();
        assert_eq!(w.get("a.weight").unwrap().data, vec![0.6, 0.8, 0.0, 10.0]);
        assert_eq!(w.get("b.weight").unwrap().data, vec![1.2, 1.0, 1.6, 0.0]);
        assert_eq!(w.len(), 2);
    }

    #[test]
    fn random_weights_build_a_decoder() {
        let mut cfg = CodecConfig::released();
        cfg.decoder_channels = 64;
        cfg.d = 16;
        cfg.semantic_dim = 32;
        let w = random_decode_weights(&cfg, 1);
        let tok = crate::codec::AudioTokenizer::from_weights(cfg, w).unwrap();
        assert!(tok.weights().is_empty());
        let audio = tok.decode(&vec![vec![5, 9]; 8]).unwrap();
        assert_eq!(audio.len(), 1920);
        assert!(audio.iter().all(|x| x.is_finite()));
    }
}
