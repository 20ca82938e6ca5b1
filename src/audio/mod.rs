//! Audio I/O for prompts and outputs: WAV read/write (any rate, mono or stereo, int or float
//! PCM), decoding of any common container for reference clips and uploads (`decode`, with
//! limits for untrusted input), response encoders for the speech server (`encode`: wav, pcm,
//! flac, mp3, opus, aac) and resampling (the reference's exact 24 -> 16 kHz sinc for the
//! semantic branch, and a general Kaiser-windowed sinc to 24 kHz for voice prompts).
//! spec: codec.md §2.1, §5.1.
//! May use: error.

pub mod decode;
pub mod encode;
pub mod resample;
pub mod wav;
