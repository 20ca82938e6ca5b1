//! (filled by the audio work)
