#!/usr/bin/env python3
"""Times the upstream reference (PyPI boson-multimodal 0.1.1, torch 2.5.1, transformers 4.46.3)
on the same random-weight shapes and prompt as `higgs bench`, on the CPU, in bf16 or f32 (on an
AVX2 CPU without AMX its bf16 is several times slower than f32), so the two can be compared side
by side on one machine (scripts/cpu-vs-reference.sh). Not part of the tests; needs:
    pip install torch==2.5.1 transformers==4.46.3 boson-multimodal==0.1.1
Usage: bench-reference.py SHAPE PROMPT_LEN STEPS [DTYPE]   (SHAPE: small | medium | real;
       DTYPE: bf16 (default) | f32)
"""
import sys
import time

import torch
from boson_multimodal.model.higgs_audio import HiggsAudioConfig, HiggsAudioModel

SHAPES = {  # layers, hidden, heads, kv heads, ffn  (vocab 128256 for all, as higgs bench)
    "small": (4, 512, 8, 2, 1536),
    "medium": (8, 2048, 16, 8, 8192),
    "real": (28, 3072, 24, 8, 8192),
}


def main():
    shape, prompt_len, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    dtype = {"bf16": torch.bfloat16, "f32": torch.float32}[sys.argv[4] if len(sys.argv) > 4 else "bf16"]
    layers, hidden, heads, kv, ffn = SHAPES[shape]
    torch.set_num_threads(int(torch.get_num_threads()))
    text_config = dict(
        model_type="llama", hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
        num_key_value_heads=kv, head_dim=hidden // heads, intermediate_size=ffn, vocab_size=128256,
        rms_norm_eps=1e-5, rope_theta=500000.0, max_position_embeddings=131072,
        rope_scaling=dict(rope_type="llama3", factor=32.0, low_freq_factor=1.0, high_freq_factor=4.0,
                          original_max_position_embeddings=8192),
        bos_token_id=128000, eos_token_id=128001,
    )
    cfg = HiggsAudioConfig(
        text_config=text_config, audio_adapter_type="dual_ffn_fast_forward",
        audio_dual_ffn_layers=list(range(layers)), audio_num_codebooks=8, audio_codebook_size=1024,
        audio_stream_bos_id=1024, audio_stream_eos_id=1025, use_delay_pattern=True,
        skip_audio_tower=True, encode_whisper_embed=False, encode_audio_in_tokens=True,
    )
    cfg._attn_implementation = "sdpa"
    torch.manual_seed(0)
    t0 = time.time()
    model = HiggsAudioModel(cfg).to(dtype).eval()
    print(f"reference: built {shape} ({dtype}) in {time.time() - t0:.1f} s, "
          f"{sum(p.numel() for p in model.parameters()) / 1e9:.2f} B params, torch threads {torch.get_num_threads()}")
    ids = [((i * 7919) % 1000) + 10 for i in range(prompt_len - 1)] + [128013]
    input_ids = torch.tensor([ids])
    kw = dict(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), use_cache=True,
              do_sample=False, eos_token_id=[128001, 128009], suppress_tokens=[1025])
    with torch.inference_mode():
        model.generate(**kw, max_new_tokens=2)  # warm-up
        t = time.time()
        model.generate(**kw, max_new_tokens=1)
        prefill = time.time() - t
        t = time.time()
        model.generate(**kw, max_new_tokens=2 + steps)
        total = time.time() - t
    step = (total - prefill) / (1 + steps)
    print(f"reference prefill {prompt_len} tokens {prefill:.3f} s  {prompt_len / prefill:.1f} tokens/s")
    print(f"reference decode batch 1 {1e3 * step:.3f} ms/step  {1 / step:.2f} steps/s")


if __name__ == "__main__":
    main()
