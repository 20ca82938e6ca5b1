"""The official `openai` Python client against `higgs serve` (run by tests/server.rs).

usage: openai_client.py BASE_URL CLIP.wav OUT_DIR

Speech (whole, streamed, SSE), a custom voice created from a clip and used by id, chat
completions with audio, and the client's error type for a bad request. Exits non-zero on the
first failed check.
"""
import base64
import io
import sys
import wave

import openai

base_url, clip_path, out_dir = sys.argv[1], sys.argv[2], sys.argv[3]
client = openai.OpenAI(base_url=base_url, api_key="sk-test", max_retries=0)

models = client.models.list()
model = models.data[0].id
assert model == "higgs-test", model
extra = {"seed": 5, "max_new_tokens": 30}

whole = client.audio.speech.create(
    model=model, voice="alloy", input="The quick brown fox.", response_format="wav",
    extra_body=extra,
)
data = whole.read()
with wave.open(io.BytesIO(data)) as w:
    assert w.getframerate() == 24000 and w.getnchannels() == 1 and w.getsampwidth() == 2
    frames = w.readframes(w.getnframes())
assert len(frames) > 0
print(f"speech wav: {len(frames) // 2} samples")

with client.audio.speech.with_streaming_response.create(
    model=model, voice="alloy", input="The quick brown fox.", response_format="pcm",
    extra_body={**extra, "stream_format": "audio"},
) as resp:
    pcm = b"".join(resp.iter_bytes())
assert pcm == frames, "streamed pcm == the wav's samples"
print(f"streamed pcm: {len(pcm)} bytes, equal to the wav")

with client.audio.speech.with_streaming_response.create(
    model=model, voice="alloy", input="The quick brown fox.", response_format="pcm",
    stream_format="sse", extra_body=extra,
) as resp:
    body = b"".join(resp.iter_bytes()).decode()
import json
events = [json.loads(e[len("data: "):]) for e in body.split("\n\n") if e.strip()]
sse_pcm = b"".join(base64.b64decode(e["audio"]) for e in events if e["type"] == "speech.audio.delta")
assert events[-1]["type"] == "speech.audio.done" and events[-1]["usage"]["total_tokens"] > 0
assert sse_pcm == frames
print(f"sse: {len(events)} events")

with open(clip_path, "rb") as f:
    voice = client.audio.voices.create(
        name="clip", audio_sample=f, consent="cons_test",
        extra_body={"transcript": "The baker opens the shop."},
    )
assert voice.id.startswith("voice_") and voice.type == "audio_sample", voice
cloned = client.audio.speech.create(
    model=model, voice={"id": voice.id}, input="The quick brown fox.", response_format="pcm",
    extra_body=extra,
).read()
assert len(cloned) > 0 and cloned != frames
print(f"custom voice {voice.id}: {len(cloned)} bytes")
deleted = client.audio.voices.delete(voice.id)
assert deleted.deleted and deleted.id == voice.id

chat = client.chat.completions.create(
    model=model,
    messages=[
        {"role": "system", "content": "Generate audio following instruction."},
        {"role": "user", "content": "Every morning the sea smell carried across the valley."},
    ],
    modalities=["text", "audio"],
    audio={"voice": "alloy", "format": "wav"},
    max_completion_tokens=30,
    seed=3,
)
wav = base64.b64decode(chat.choices[0].message.audio.data)
with wave.open(io.BytesIO(wav)) as w:
    assert w.getnframes() > 0
print(f"chat: {len(wav)} bytes of wav, usage {chat.usage.total_tokens}")

stream = client.chat.completions.create(
    model=model,
    messages=[{"role": "user", "content": "Every morning the sea smell carried across the valley."}],
    modalities=["text", "audio"], audio={"voice": "alloy", "format": "pcm16"},
    max_completion_tokens=30, seed=3, stream=True, stream_options={"include_usage": True},
)
chunks = 0
usage = None
for c in stream:
    if c.choices and getattr(c.choices[0].delta, "audio", None):
        chunks += 1
    if c.usage:
        usage = c.usage
assert chunks > 0 and usage is not None
print(f"chat stream: {chunks} audio chunks")

try:
    client.audio.speech.create(model=model, voice="alloy", input="", response_format="wav")
    raise SystemExit("an empty input was accepted")
except openai.BadRequestError as e:
    assert e.status_code == 400 and "input" in str(e)
try:
    client.audio.speech.create(model="tts-1", voice="alloy", input="hi")
    raise SystemExit("an unknown model was accepted")
except openai.NotFoundError:
    pass
print("openai client: all checks passed")
