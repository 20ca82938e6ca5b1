//! Long-form text: `prepare_chunk_text` (none / speaker / word chunking) and the per-chunk
//! conversation of `HiggsAudioModelClient.generate` (history of earlier chunks' user turns and
//! generated audio, trimmed to the generation buffer).
//! May use: error, prompt::{chatml, normalize}. Spec: model.md §9.4; fixtures README rules 6-7.

use crate::error::{Error, Result};

use super::chatml::{AudioSource, Message, Role};
use super::collate::AudioItem;
use super::normalize::py_strip;

/// How the normalised transcript is cut into generation calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ChunkMethod {
    /// One chunk: the whole transcript.
    #[default]
    None,
    /// One turn per `[SPEAKER..]` line (grouped by `max_num_turns`).
    Speaker,
    /// `max_word_num` words per chunk.
    Word,
}

impl std::str::FromStr for ChunkMethod {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "" | "none" | "None" => Ok(ChunkMethod::None),
            "speaker" => Ok(ChunkMethod::Speaker),
            "word" => Ok(ChunkMethod::Word),
            other => Err(Error::BadRequest(format!(
                "chunk_method `{other}`: expected speaker, word or none"
            ))),
        }
    }
}

/// Chunking options (the CLI's `--chunk_*` flags).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chunking {
    pub method: ChunkMethod,
    /// Words per chunk for [`ChunkMethod::Word`] (CLI default 200).
    pub max_word_num: usize,
    /// Turns per chunk for [`ChunkMethod::Speaker`] (CLI default 1).
    pub max_num_turns: usize,
}

impl Default for Chunking {
    fn default() -> Self {
        Chunking {
            method: ChunkMethod::None,
            max_word_num: 200,
            max_num_turns: 1,
        }
    }
}

/// `prepare_chunk_text` over the normalised transcript.
pub fn chunk_text(text: &str, opts: &Chunking) -> Result<Vec<String>> {
    match opts.method {
        ChunkMethod::None => Ok(vec![text.to_string()]),
        ChunkMethod::Speaker => Ok(speaker_chunks(text, opts.max_num_turns)),
        ChunkMethod::Word => word_chunks(text, opts.max_word_num),
    }
}

fn speaker_chunks(text: &str, max_num_turns: usize) -> Vec<String> {
    let mut turns: Vec<String> = Vec::new();
    let mut current = String::new();
    for line in text.split('\n') {
        let line = py_strip(line);
        // `<|speaker_id_start|>` is plain text here, not a special token.
        if line.starts_with("[SPEAKER") || line.starts_with("<|speaker_id_start|>") {
            if !current.is_empty() {
                turns.push(py_strip(&current).to_string());
            }
            current = line.to_string();
        } else if !current.is_empty() {
            current.push('\n');
            current.push_str(line);
        } else {
            current = line.to_string();
        }
    }
    if !current.is_empty() {
        turns.push(py_strip(&current).to_string());
    }
    if max_num_turns > 1 {
        turns
            .chunks(max_num_turns)
            .map(|group| group.join("\n"))
            .collect()
    } else {
        turns
    }
}

fn word_chunks(text: &str, max_word_num: usize) -> Result<Vec<String>> {
    if max_word_num == 0 {
        return Err(Error::BadRequest(
            "chunk_max_word_num must be at least 1".into(),
        ));
    }
    // The reference decides the language once for the whole text, not per paragraph.
    let segmenter = is_chinese(text).then(Segmenter::new);
    let mut chunks: Vec<String> = Vec::new();
    for paragraph in text.split("\n\n") {
        match &segmenter {
            Some(jieba) => {
                let words = jieba.words(paragraph);
                chunks.extend(words.chunks(max_word_num).map(|w| w.concat()));
            }
            None => {
                let words: Vec<&str> = paragraph.split(' ').collect();
                chunks.extend(words.chunks(max_word_num).map(|w| w.join(" ")));
            }
        }
        // jieba gives no word for an empty paragraph, so like the reference's `chunks[-1]` this
        // lands on the previous paragraph's chunk (the reference raises IndexError when there is
        // none; here the text simply has no chunk).
        if let Some(last) = chunks.last_mut() {
            last.push_str("\n\n");
        }
    }
    Ok(chunks)
}

/// jieba's words for `jieba.lcut(text)` (Python jieba 0.42.1: default dictionary, accurate
/// mode, HMM on for unknown words). Joining them gives `text` back.
pub fn segment_chinese(text: &str) -> Vec<String> {
    Segmenter::new()
        .words(text)
        .into_iter()
        .map(str::to_string)
        .collect()
}

/// The default jieba dictionary, built per request that needs it: building takes tens of
/// milliseconds, against seconds of generation per chunk, and keeps no process-wide state.
struct Segmenter(jieba_rs::Jieba);

impl Segmenter {
    fn new() -> Self {
        Segmenter(jieba_rs::Jieba::new())
    }

    fn words<'a>(&self, text: &'a str) -> Vec<&'a str> {
        let mut words = Vec::new();
        for token in self.0.cut(text, true) {
            if token.word.is_ascii() && token.word.contains(['.', '_', '-']) {
                words.extend(python_skip_split(token.word));
            } else {
                words.push(token.word);
            }
        }
        words
    }
}

/// Python jieba's HMM step cuts a non-Han run with `re_skip = [a-zA-Z0-9]+(?:\.\d+)?%?` and
/// keeps each gap between matches whole; jieba-rs 0.11 widened that rule so `.`, `_` and `-`
/// join alphanumeric runs (`010-12345678`, `example.com` stay one token, where jieba gives
/// `010 / - / 12345678` and `example / . / com`). No dictionary word holds those characters,
/// so an ASCII token with one of them came from that rule and is cut again Python's way.
fn python_skip_split(token: &str) -> Vec<&str> {
    let bytes = token.as_bytes();
    let run = |mut i: usize, f: fn(&u8) -> bool| {
        while i < bytes.len() && f(&bytes[i]) {
            i += 1;
        }
        i
    };
    let mut pieces = Vec::new();
    let mut start = 0;
    while start < bytes.len() {
        let end = if bytes[start].is_ascii_alphanumeric() {
            let mut end = run(start, u8::is_ascii_alphanumeric);
            if bytes.get(end) == Some(&b'.') && bytes.get(end + 1).is_some_and(u8::is_ascii_digit) {
                end = run(end + 1, u8::is_ascii_digit);
            }
            if bytes.get(end) == Some(&b'%') {
                end += 1;
            }
            end
        } else {
            run(start, |b| !b.is_ascii_alphanumeric())
        };
        // The token is ASCII, so every byte index is a char boundary.
        pieces.push(&token[start..end]);
        start = end;
    }
    pieces
}

/// Stand-in for `langid.classify(text)[0] == "zh"`: only this decision matters. Text counts as
/// Chinese when it has Han characters, no kana or hangul (those make langid say ja / ko), and
/// its Han characters outweigh its Latin letters (langid scores UTF-8 byte n-grams; a Han
/// character is 3 bytes).
pub fn is_chinese(text: &str) -> bool {
    let (mut han, mut kana, mut hangul, mut latin) = (0usize, 0usize, 0usize, 0usize);
    for c in text.chars() {
        match c as u32 {
            0x4E00..=0x9FFF | 0x3400..=0x4DBF | 0xF900..=0xFAFF | 0x20000..=0x2FA1F => han += 1,
            0x3040..=0x30FF | 0x31F0..=0x31FF => kana += 1,
            0xAC00..=0xD7AF | 0x1100..=0x11FF | 0x3130..=0x318F => hangul += 1,
            _ if c.is_alphabetic() => latin += 1,
            _ => {}
        }
    }
    han > 0 && kana == 0 && hangul == 0 && 3 * han >= latin
}

/// The conversation of one long-form request across its chunks: the user turns and generated
/// audio of earlier chunks, kept to the last `buffer_size` chunks.
#[derive(Clone, Debug)]
pub struct ChunkHistory {
    buffer_size: Option<usize>,
    messages: Vec<Message>,
    generated: Vec<AudioItem>,
}

impl ChunkHistory {
    /// `buffer_size`: the CLI's `--generation_chunk_buffer_size` (None = keep everything).
    pub fn new(buffer_size: Option<usize>) -> Self {
        ChunkHistory {
            buffer_size,
            messages: Vec::new(),
            generated: Vec::new(),
        }
    }

    /// Appends the next chunk's user turn (step 1 of a call).
    pub fn push_user(&mut self, chunk: &str) {
        self.messages.push(Message::text(Role::User, chunk));
    }

    /// Appends a chunk's generated audio (codec frames, delay already reverted and stripped)
    /// and its assistant turn, then trims to the buffer.
    pub fn push_generated(&mut self, audio: AudioItem) {
        self.generated.push(audio);
        self.messages
            .push(Message::audio(Role::Assistant, AudioSource::Slot));
        if let Some(b) = self.buffer_size {
            if self.generated.len() > b {
                // Python's `x[-0:]` is the whole list, so b = 0 keeps everything.
                if b > 0 {
                    self.generated.drain(..self.generated.len() - b);
                }
                let keep = 2 * b;
                if keep > 0 && self.messages.len() > keep {
                    self.messages.drain(..self.messages.len() - keep);
                }
            }
        }
    }

    pub fn messages(&self) -> &[Message] {
        &self.messages
    }

    pub fn generated(&self) -> &[AudioItem] {
        &self.generated
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(method: ChunkMethod, words: usize, turns: usize) -> Chunking {
        Chunking {
            method,
            max_word_num: words,
            max_num_turns: turns,
        }
    }

    #[test]
    fn no_chunking() {
        assert_eq!(
            chunk_text("a b\nc", &Chunking::default()).unwrap(),
            vec!["a b\nc"]
        );
    }

    #[test]
    fn speaker_turns() {
        let t = "intro\nmore\n[SPEAKER0] a\nb\n[SPEAKER1] c\n<|speaker_id_start|> d";
        let one = chunk_text(t, &opts(ChunkMethod::Speaker, 200, 1)).unwrap();
        assert_eq!(
            one,
            vec![
                "intro\nmore",
                "[SPEAKER0] a\nb",
                "[SPEAKER1] c",
                "<|speaker_id_start|> d"
            ]
        );
        let two = chunk_text(t, &opts(ChunkMethod::Speaker, 200, 2)).unwrap();
        assert_eq!(
            two,
            vec![
                "intro\nmore\n[SPEAKER0] a\nb",
                "[SPEAKER1] c\n<|speaker_id_start|> d"
            ]
        );
        let three = chunk_text(t, &opts(ChunkMethod::Speaker, 200, 3)).unwrap();
        assert_eq!(three.len(), 2);
    }

    #[test]
    fn word_chunks_english() {
        let c = chunk_text("a b c d e\nf g.", &opts(ChunkMethod::Word, 3, 1)).unwrap();
        assert_eq!(c, vec!["a b c", "d e\nf g.\n\n"]);
        let c = chunk_text("a b", &opts(ChunkMethod::Word, 3, 1)).unwrap();
        assert_eq!(c, vec!["a b\n\n"]);
        assert!(chunk_text("a", &opts(ChunkMethod::Word, 0, 1)).is_err());
    }

    #[test]
    fn word_chunks_chinese() {
        assert!(is_chinese("大家好, 欢迎收听本期的跟李沐学AI."));
        assert!(!is_chinese("Hello world, this is English with one 字."));
        assert!(!is_chinese("こんにちは世界"));
        let c = chunk_text("大家好, 欢迎.", &opts(ChunkMethod::Word, 200, 1)).unwrap();
        assert_eq!(c, vec!["大家好, 欢迎.\n\n"]);
        // jieba: 大家 / 好 / , / " " / 欢迎 / .
        let c = chunk_text("大家好, 欢迎.", &opts(ChunkMethod::Word, 3, 1)).unwrap();
        assert_eq!(c, vec!["大家好,", " 欢迎.\n\n"]);
        let c = chunk_text("第一段.\n\n\n\n第二段.", &opts(ChunkMethod::Word, 2, 1)).unwrap();
        assert_eq!(c, vec!["第一段.\n\n\n\n", "第二段.\n\n"]);
    }

    #[test]
    fn python_re_skip() {
        assert_eq!(python_skip_split("010-12345678"), ["010", "-", "12345678"]);
        assert_eq!(python_skip_split("example.com"), ["example", ".", "com"]);
        assert_eq!(python_skip_split("1.2.3%"), ["1.2", ".", "3%"]);
        assert_eq!(python_skip_split("a_b"), ["a", "_", "b"]);
        assert_eq!(python_skip_split("3999.99"), ["3999.99"]);
    }

    fn gen(k: usize) -> AudioItem {
        AudioItem {
            label: format!("generated:chunk{k}"),
            codes: vec![vec![k as u32]; 8],
        }
    }

    #[test]
    fn history_buffer() {
        let mut h = ChunkHistory::new(Some(1));
        for k in 0..3 {
            h.push_user(&format!("chunk {k}"));
            h.push_generated(gen(k));
        }
        assert_eq!(h.generated(), &[gen(2)]);
        assert_eq!(h.messages().len(), 2);
        assert_eq!(h.messages()[0], Message::text(Role::User, "chunk 2"));

        let mut keep_all = ChunkHistory::new(Some(0));
        let mut unlimited = ChunkHistory::new(None);
        for k in 0..3 {
            for h in [&mut keep_all, &mut unlimited] {
                h.push_user("x");
                h.push_generated(gen(k));
            }
        }
        assert_eq!(keep_all.generated().len(), 3);
        assert_eq!(keep_all.messages().len(), 6);
        assert_eq!(unlimited.messages().len(), 6);
    }
}
