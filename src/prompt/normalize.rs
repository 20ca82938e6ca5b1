//! Transcript normalisation of `examples/generation.py::main`, in the reference's order, and
//! the speaker tags it collects from the raw transcript.
//! May use: nothing. Spec: model.md §9.3; fixtures README rules 3-4.

/// `normalize_chinese_punctuation`: plain replacements, applied to every language. Note `，`
/// becomes a comma *and a space*.
const FULL_WIDTH_PUNCTUATION: [(char, &str); 24] = [
    ('，', ", "),
    ('。', "."),
    ('：', ":"),
    ('；', ";"),
    ('？', "?"),
    ('！', "!"),
    ('（', "("),
    ('）', ")"),
    ('【', "["),
    ('】', "]"),
    ('《', "<"),
    ('》', ">"),
    ('“', "\""),
    ('”', "\""),
    ('‘', "'"),
    ('’', "'"),
    ('、', ","),
    ('—', "-"),
    ('…', "..."),
    ('·', "."),
    ('「', "\""),
    ('」', "\""),
    ('『', "\""),
    ('』', "\""),
];

/// Sound-event tags, replaced in this order (exact, case-sensitive: `[Laugh]` stays).
const SOUND_EVENTS: [(&str, &str); 11] = [
    ("[laugh]", "<SE>[Laughter]</SE>"),
    ("[humming start]", "<SE_s>[Humming]</SE_s>"),
    ("[humming end]", "<SE_e>[Humming]</SE_e>"),
    ("[music start]", "<SE_s>[Music]</SE_s>"),
    ("[music end]", "<SE_e>[Music]</SE_e>"),
    ("[music]", "<SE>[Music]</SE>"),
    ("[sing start]", "<SE_s>[Singing]</SE_s>"),
    ("[sing end]", "<SE_e>[Singing]</SE_e>"),
    ("[applause]", "<SE>[Applause]</SE>"),
    ("[cheering]", "<SE>[Cheering]</SE>"),
    ("[cough]", "<SE>[Cough]</SE>"),
];

/// Endings that keep the text as is; anything else gets a `"."` (so does `</SE_s>`).
const FINAL_ENDINGS: [&str; 9] = [".", "!", "?", ",", ";", "\"", "'", "</SE_e>", "</SE>"];

/// Python's `str.isspace` set, used by `str.split()` and `str.strip()`: Rust's White_Space
/// plus U+001C..U+001F, which Python also counts.
pub fn is_py_whitespace(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python `s.strip()` (no argument).
pub fn py_strip(s: &str) -> &str {
    s.trim_matches(is_py_whitespace)
}

/// Python `" ".join(s.split())`: whitespace runs become one space, ends trimmed.
fn collapse_whitespace(s: &str) -> String {
    s.split(is_py_whitespace)
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Full-width punctuation → ASCII (`normalize_chinese_punctuation`).
pub fn normalize_chinese_punctuation(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match FULL_WIDTH_PUNCTUATION.iter().find(|(from, _)| *from == c) {
            Some((_, to)) => out.push_str(to),
            None => out.push(c),
        }
    }
    out
}

/// The whole normalisation of `main`, in order: full-width punctuation, parentheses to
/// spaces, °F/°C, sound-event tags, per-line whitespace (blank lines dropped), final period.
pub fn normalize_transcript(raw: &str) -> String {
    let mut t = normalize_chinese_punctuation(raw);
    t = t.replace(['(', ')'], " ");
    t = t.replace("°F", " degrees Fahrenheit");
    t = t.replace("°C", " degrees Celsius");
    for (tag, replacement) in SOUND_EVENTS {
        t = t.replace(tag, replacement);
    }
    let lines: Vec<String> = t
        .split('\n')
        .filter(|line| !py_strip(line).is_empty())
        .map(collapse_whitespace)
        .collect();
    let mut t = py_strip(&lines.join("\n")).to_string();
    if !FINAL_ENDINGS.iter().any(|e| t.ends_with(e)) {
        t.push('.');
    }
    t
}

/// Distinct `[SPEAKER<digits>]` tags of the raw transcript (as `SPEAKERn`), sorted as strings
/// (so `SPEAKER10` < `SPEAKER2`), as `sorted(set(re.findall(r"\[(SPEAKER\d+)\]", t)))`.
pub fn speaker_tags(raw: &str) -> Vec<String> {
    const OPEN: &str = "[SPEAKER";
    let mut tags = Vec::new();
    let mut rest = raw;
    while let Some(at) = rest.find(OPEN) {
        let after = &rest[at + OPEN.len()..];
        // Python's `\d` is any Unicode decimal digit; `is_numeric` is the closest std test.
        let digits_len: usize = after
            .chars()
            .take_while(|c| c.is_numeric())
            .map(char::len_utf8)
            .sum();
        if digits_len > 0 && after[digits_len..].starts_with(']') {
            tags.push(format!("SPEAKER{}", &after[..digits_len]));
            rest = &after[digits_len + 1..];
        } else {
            // No match here; regex findall resumes one character later, and `[` cannot
            // start inside "SPEAKER", so skipping the `[` is the same.
            rest = &rest[at + 1..];
        }
    }
    tags.sort();
    tags.dedup();
    tags
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_width_and_parentheses() {
        assert_eq!(normalize_transcript("你好，世界。"), "你好, 世界.");
        assert_eq!(normalize_transcript("a（b）c"), "a b c.");
        assert_eq!(
            normalize_transcript("It’s “fine”—ok…"),
            "It's \"fine\"-ok..."
        );
        assert_eq!(
            normalize_transcript("【laugh】 yes"),
            "<SE>[Laughter]</SE> yes."
        );
        assert_eq!(normalize_transcript("《SE》"), "<SE>.");
    }

    #[test]
    fn units_and_sound_events() {
        assert_eq!(
            normalize_transcript("72°F or 22°C!"),
            "72 degrees Fahrenheit or 22 degrees Celsius!"
        );
        assert_eq!(normalize_transcript("ha [laugh]"), "ha <SE>[Laughter]</SE>");
        assert_eq!(
            normalize_transcript("[music start] la"),
            "<SE_s>[Music]</SE_s> la."
        );
        assert_eq!(
            normalize_transcript("la [music end]"),
            "la <SE_e>[Music]</SE_e>"
        );
        assert_eq!(
            normalize_transcript("la [music start]"),
            "la <SE_s>[Music]</SE_s>."
        );
        assert_eq!(normalize_transcript("[Laugh]"), "[Laugh].");
        assert_eq!(
            normalize_transcript("[cough][cheering][applause]"),
            "<SE>[Cough]</SE><SE>[Cheering]</SE><SE>[Applause]</SE>"
        );
    }

    #[test]
    fn whitespace_rules() {
        assert_eq!(
            normalize_transcript("  a \t b  \n\n \u{3000}\n c\u{1f}d \r\n"),
            "a b\nc d."
        );
        assert_eq!(normalize_transcript("x\u{a0}\u{a0}y'"), "x y'");
        assert_eq!(normalize_transcript(""), ".");
        for end in ["a.", "a!", "a?", "a,", "a;", "a\"", "a'"] {
            assert_eq!(normalize_transcript(end), end);
        }
    }

    #[test]
    fn speaker_tags_sorted_as_strings() {
        let t = "[SPEAKER2] a\n[SPEAKER10] b [SPEAKER2] [SPEAKER] [SPEAKERx] [[SPEAKER0]";
        assert_eq!(speaker_tags(t), vec!["SPEAKER0", "SPEAKER10", "SPEAKER2"]);
        assert!(speaker_tags("no tags").is_empty());
    }
}
