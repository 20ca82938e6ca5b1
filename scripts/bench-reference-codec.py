#!/usr/bin/env python3
"""Times the upstream reference audio tokenizer (boson-multimodal 0.1.1, torch 2.5.1) on the
CPU at its released sizes with random weights, for a side-by-side with `higgs bench --codec`.
HuBERT-base is built locally from a stock HubertConfig (random weights; nothing is fetched).
Needs: pip install torch==2.5.1 torchaudio==2.5.1 transformers==4.46.3 boson-multimodal==0.1.1
       descript-audio-codec==1.0.0 vector-quantize-pytorch einops
Usage: bench-reference-codec.py SECONDS
"""
import sys
import time

import torch
import transformers
from transformers import HubertConfig, HubertModel

import boson_multimodal.audio_processing.higgs_audio_tokenizer as hat


class _LocalHubert:
    @staticmethod
    def from_pretrained(*_a, **_k):
        return HubertModel(HubertConfig())  # hubert-base shapes, random weights


def main():
    seconds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    hat.AutoModel = _LocalHubert
    torch.manual_seed(0)
    tok = hat.HiggsAudioTokenizer(
        n_filters=32, D=256, target_bandwidths=[0.5, 1, 1.5, 2, 4], ratios=[8, 5, 4, 2, 3],
        sample_rate=24000, bins=1024, n_q=8, codebook_dim=64, semantic_techer="hubert_base_general",
        device="cpu",
    ).eval()
    x = torch.sin(torch.arange(24000 * seconds, dtype=torch.float32) * 0.031) * 0.3
    with torch.inference_mode():
        codes = torch.randint(0, 1024, (1, 8, 25 * seconds))
        tok.decode(codes[:, :, :25])  # warm-up
        t = time.time()
        wav = tok.decode(codes)
        d = time.time() - t
        t = time.time()
        c = tok.encode(x.numpy(), sr=24000)
        e = time.time() - t
    print(f"reference codec (torch {torch.__version__}, {torch.get_num_threads()} threads), {seconds} s of audio")
    print(f"reference decode {codes.shape[-1]} frames -> {wav.shape[-1]} samples  {d:.3f} s  real-time factor {seconds / d:.3f}x")
    print(f"reference encode -> {tuple(c.shape)}  {e:.3f} s  real-time factor {seconds / e:.3f}x")


if __name__ == "__main__":
    main()
