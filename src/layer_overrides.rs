//! DualFFN research knobs: load-time overrides of a checkpoint's per-layer table
//! (`--dual-ffn-layers`, `--fast-forward-layers`, `--audio-ffn off`), parsed and validated like
//! `config.json` (errors name the flag), then turned into the layer kinds the model runs.
//! With no override the table is the config's, unchanged (spec: model.md §1.2, §5.1, §5.8).
//! May use: config, error.

use crate::config::{AdapterType, LayerKind, ModelConfig};
use crate::error::{Error, Result};
use std::path::Path;

/// Whether audio positions of dual layers use the audio FFN (default) or the text FFN.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AudioFfn {
    #[default]
    On,
    /// Ablation: audio positions keep their audio norms but go through the text FFN.
    Off,
}

/// Overrides of the per-layer table; `None` keeps the config's choice.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LayerOverrides {
    /// Exactly these layers are dual (audio norms + audio FFN for audio positions).
    pub dual_ffn_layers: Option<Vec<usize>>,
    /// Exactly these layers are fast-forward (audio positions skip them).
    pub fast_forward_layers: Option<Vec<usize>>,
    pub audio_ffn: AudioFfn,
}

/// The command line is the "file" of these fields in error messages.
const ORIGIN: &str = "<command line>";

fn flag_error(flag: &str, reason: impl Into<String>) -> Error {
    Error::config(Path::new(ORIGIN), flag, reason)
}

/// A layer list: `none` (or empty), or comma-separated indices and inclusive ranges `a-b`,
/// e.g. `0,2,4-7`. Each layer at most once. Indices are checked against the model later.
pub fn parse_layer_list(flag: &str, s: &str) -> Result<Vec<usize>> {
    let s = s.trim();
    if s.is_empty() || s.eq_ignore_ascii_case("none") {
        return Ok(Vec::new());
    }
    let num = |t: &str| -> Result<usize> {
        t.trim().parse::<usize>().map_err(|_| {
            flag_error(
                flag,
                format!("`{t}` is not a layer index (expected e.g. `0,2,4-7` or `none`)"),
            )
        })
    };
    let mut out = Vec::new();
    for part in s.split(',') {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (num(a)?, num(b)?),
            None => {
                let i = num(part)?;
                (i, i)
            }
        };
        if a > b {
            return Err(flag_error(
                flag,
                format!("range `{part}` is empty (start > end)"),
            ));
        }
        if b - a > crate::config::MAX_LAYERS {
            return Err(flag_error(flag, format!("range `{part}` is too long")));
        }
        for i in a..=b {
            if out.contains(&i) {
                return Err(flag_error(flag, format!("layer {i} is listed twice")));
            }
            out.push(i);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// `--audio-ffn on|off`.
pub fn parse_audio_ffn(s: &str) -> Result<AudioFfn> {
    match s {
        "on" => Ok(AudioFfn::On),
        "off" => Ok(AudioFfn::Off),
        other => Err(flag_error(
            "--audio-ffn",
            format!("`{other}`: expected on or off"),
        )),
    }
}

impl LayerOverrides {
    pub fn is_default(&self) -> bool {
        *self == LayerOverrides::default()
    }

    /// The layer kinds with the overrides applied. `has_audio_weights(i)`: whether layer `i`
    /// has audio norms and an audio FFN (a checkpoint has them only for its config's dual
    /// layers, so only those can be dual). Layers named by neither list keep what the
    /// adapter gives a non-dual layer when only `--dual-ffn-layers` is given, and become plain
    /// when `--fast-forward-layers` is given (it names every fast-forward layer).
    pub fn layer_kinds(
        &self,
        cfg: &ModelConfig,
        has_audio_weights: impl Fn(usize) -> bool,
    ) -> Result<Vec<LayerKind>> {
        let n = cfg.n_layers;
        let check = |flag: &str, list: &[usize]| -> Result<()> {
            match list.iter().find(|&&i| i >= n) {
                Some(i) => Err(flag_error(
                    flag,
                    format!(
                        "layer {i} does not exist (the model has {n} layers: 0..={})",
                        n.saturating_sub(1)
                    ),
                )),
                None => Ok(()),
            }
        };
        let config_dual: Vec<usize> = (0..n)
            .filter(|&i| cfg.layer_kinds[i] == LayerKind::Dual)
            .collect();
        if let Some(d) = &self.dual_ffn_layers {
            check("--dual-ffn-layers", d)?;
            if let Some(i) = d.iter().find(|&&i| !has_audio_weights(i)) {
                return Err(flag_error(
                    "--dual-ffn-layers",
                    format!(
                        "layer {i} has no audio FFN weights (the checkpoint's dual layers are {config_dual:?})"
                    ),
                ));
            }
        }
        if let Some(f) = &self.fast_forward_layers {
            check("--fast-forward-layers", f)?;
            let d = self.dual_ffn_layers.as_deref().unwrap_or(&[]);
            if let Some(i) = f.iter().find(|i| d.contains(i)) {
                return Err(flag_error(
                    "--fast-forward-layers",
                    format!("layer {i} is also in --dual-ffn-layers {d:?}: a layer is dual or fast-forward, not both"),
                ));
            }
        }
        let dual: Vec<bool> = match (&self.dual_ffn_layers, &self.fast_forward_layers) {
            (Some(d), _) => (0..n).map(|i| d.contains(&i)).collect(),
            // Only fast-forward layers named: the config's dual layers minus those.
            (None, Some(f)) => (0..n)
                .map(|i| cfg.layer_kinds[i] == LayerKind::Dual && !f.contains(&i))
                .collect(),
            (None, None) => return Ok(cfg.layer_kinds.clone()),
        };
        let rest = match (&self.fast_forward_layers, cfg.adapter) {
            (Some(_), _) => LayerKind::Plain,
            (None, AdapterType::DualFfnFastForward) => LayerKind::FastForward,
            (None, _) => LayerKind::Plain,
        };
        let ff = self.fast_forward_layers.as_deref().unwrap_or(&[]);
        Ok((0..n)
            .map(|i| {
                if dual[i] {
                    LayerKind::Dual
                } else if ff.contains(&i) {
                    LayerKind::FastForward
                } else {
                    rest
                }
            })
            .collect())
    }
}

/// One line for the load log: the table in runs (`dual 0-13, fast-forward 14-27`), and the
/// audio FFN setting when it is off.
pub fn describe(kinds: &[LayerKind], audio_ffn: AudioFfn) -> String {
    let name = |k: LayerKind| match k {
        LayerKind::Dual => "dual",
        LayerKind::FastForward => "fast-forward",
        LayerKind::Plain => "plain",
    };
    let mut parts: Vec<String> = Vec::new();
    for k in [LayerKind::Dual, LayerKind::FastForward, LayerKind::Plain] {
        let idx: Vec<usize> = (0..kinds.len()).filter(|&i| kinds[i] == k).collect();
        if !idx.is_empty() {
            parts.push(format!("{} {}", name(k), runs(&idx)));
        }
    }
    let mut s = format!("layers: {}", parts.join(", "));
    if audio_ffn == AudioFfn::Off {
        s.push_str("; audio FFN off (audio positions use the text FFN)");
    }
    s
}

/// `[0,1,2,5]` -> `0-2,5`.
fn runs(idx: &[usize]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && idx[j + 1] == idx[j] + 1 {
            j += 1;
        }
        out.push(if i == j {
            idx[i].to_string()
        } else {
            format!("{}-{}", idx[i], idx[j])
        });
        i = j + 1;
    }
    out.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use LayerKind::{Dual, FastForward, Plain};

    fn fixture() -> ModelConfig {
        ModelConfig::load(Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/reference/llm"
        )))
        .unwrap()
    }

    #[test]
    fn lists_parse_and_refuse_with_the_flag_named() {
        assert_eq!(
            parse_layer_list("--x", "0,2,4-6").unwrap(),
            vec![0, 2, 4, 5, 6]
        );
        assert_eq!(
            parse_layer_list("--x", "none").unwrap(),
            Vec::<usize>::new()
        );
        assert_eq!(parse_layer_list("--x", "").unwrap(), Vec::<usize>::new());
        for bad in ["a", "1,,2", "3-1", "1,1", "-1", "2-"] {
            let e = parse_layer_list("--dual-ffn-layers", bad)
                .unwrap_err()
                .to_string();
            assert!(e.contains("--dual-ffn-layers"), "{bad}: {e}");
        }
    }

    #[test]
    fn overrides_change_the_table() {
        let c = fixture(); // dual 0,2; fast-forward 1,3
        let has = |i: usize| c.layer_kinds[i] == Dual;
        let o = LayerOverrides::default();
        assert_eq!(o.layer_kinds(&c, has).unwrap(), c.layer_kinds);
        let o = LayerOverrides {
            dual_ffn_layers: Some(vec![2]),
            ..Default::default()
        };
        assert_eq!(
            o.layer_kinds(&c, has).unwrap(),
            vec![FastForward, FastForward, Dual, FastForward]
        );
        let o = LayerOverrides {
            fast_forward_layers: Some(vec![0]),
            ..Default::default()
        };
        assert_eq!(
            o.layer_kinds(&c, has).unwrap(),
            vec![FastForward, Plain, Dual, Plain]
        );
        assert_eq!(
            describe(&[Dual, Dual, Plain, FastForward, Dual], AudioFfn::On),
            "layers: dual 0-1,4, fast-forward 3, plain 2"
        );
    }

    #[test]
    fn invalid_overrides_name_the_flag() {
        let c = fixture();
        let has = |i: usize| c.layer_kinds[i] == Dual;
        let cases = [
            (Some(vec![7]), None, "--dual-ffn-layers"),
            (Some(vec![1]), None, "no audio FFN weights"),
            (None, Some(vec![4]), "--fast-forward-layers"),
            (Some(vec![0]), Some(vec![0]), "not both"),
        ];
        for (d, f, want) in cases {
            let o = LayerOverrides {
                dual_ffn_layers: d,
                fast_forward_layers: f,
                ..Default::default()
            };
            let e = o.layer_kinds(&c, has).unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
        }
    }
}
