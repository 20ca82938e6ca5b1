//! The DualFFN research flags shared by `higgs tts`, `higgs serve` and `higgs bench`:
//! load-time overrides of the checkpoint's layer table (`layer_overrides.rs` parses and
//! validates them; errors name the flag). Without them the model runs as its config says.

use crate::layer_overrides::{parse_audio_ffn, parse_layer_list, LayerOverrides};

#[derive(clap::Args, Clone, Debug, Default)]
pub struct DualFfnFlags {
    /// Research: exactly these layers are DualFFN layers (audio positions use the audio norms
    /// and FFN), e.g. `0-13` or `0,2,4`, or `none`; each must have audio weights in the
    /// checkpoint. Other layers are what the adapter makes non-dual layers (fast-forward for
    /// dual_ffn_fast_forward, else plain) unless --fast-forward-layers names them.
    #[arg(long, value_name = "LIST")]
    pub dual_ffn_layers: Option<String>,
    /// Research: exactly these layers are fast-forward (audio positions skip the layer), e.g.
    /// `14-27`, or `none`; layers in neither list become plain Llama layers. Alone, it turns
    /// these layers of the config's dual set into fast-forward ones.
    #[arg(long, value_name = "LIST")]
    pub fast_forward_layers: Option<String>,
    /// Research ablation: `off` makes audio positions of dual layers use the text FFN (the
    /// audio norms stay); `on` (default) is the model as trained.
    #[arg(long, value_name = "on|off", default_value = "on")]
    pub audio_ffn: String,
}

impl DualFfnFlags {
    /// The overrides these flags ask for (checked against the model at load).
    pub fn overrides(&self) -> crate::Result<LayerOverrides> {
        Ok(LayerOverrides {
            dual_ffn_layers: self
                .dual_ffn_layers
                .as_deref()
                .map(|s| parse_layer_list("--dual-ffn-layers", s))
                .transpose()?,
            fast_forward_layers: self
                .fast_forward_layers
                .as_deref()
                .map(|s| parse_layer_list("--fast-forward-layers", s))
                .transpose()?,
            audio_ffn: parse_audio_ffn(&self.audio_ffn)?,
        })
    }
}
