//! Text of the log stream made safe to show to a person on a terminal.
//!
//! A log record's message may carry text that the agent does not choose: the
//! algorithm's own output when the manifest forwards it (records with the
//! source `algorithm`), names and values from a manifest, a peer's error.
//! The algorithm is another party's code and must be treated as hostile;
//! shown raw, its text could
//!
//! - forge a record: a newline starts what looks like a record of its own,
//!   and a carriage return (or ESC `[2K`, erase the line) sends the cursor
//!   back so that later text overwrites the record's time, level and source;
//! - drive the terminal: ESC starts ANSI control sequences (CSI moves the
//!   cursor and erases the screen; OSC sets the window title, writes the
//!   clipboard with OSC 52, makes hyperlinks), and the C1 controls
//!   U+0080..U+009F are their 8-bit forms;
//! - reorder what is shown: Unicode's bidirectional controls (U+202E
//!   RIGHT-TO-LEFT OVERRIDE and its kin) and line and paragraph separators.
//!
//! [`escape`] shows each of these as a visible escape on the same line, and
//! doubles the backslash so that the rendering is unambiguous (a message that
//! prints the four characters `\x1b` shows as `\\x1b`). It is for human
//! renderings only (the agent's console, `cvmctl logs listen` without
//! `--json`): the log stream and JSON output keep the exact text, where JSON's
//! own escaping (`\u001b`, `\r`) covers the C0 control characters, and a
//! JSON writer can use [`needs_escape`] to write the others as `\uXXXX` too.

use std::borrow::Cow;
use std::fmt::Write as _;

/// `text` with every character that a terminal would act on (see the
/// module documentation) replaced by a visible escape: `\n`, `\r`, `\t`,
/// `\\`, `\xHH` for the other ASCII controls and DEL, `\u{HHHH}` for C1
/// controls, bidirectional controls and line or paragraph separators.
///
/// Borrows `text` when there is nothing to escape, which is the usual case.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_ascii_control() => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Whether [`escape`] escapes `c`: a terminal would act on it rather than
/// show it, or it is the backslash, the escape character itself.
///
/// For renderings that have an escape of their own, such as JSON's `\uXXXX`
/// for the characters JSON itself leaves raw (DEL, the C1 controls, the
/// bidirectional controls, the line and paragraph separators).
pub fn needs_escape(c: char) -> bool {
    matches!(
        c,
        '\\'
            // C0 controls and DEL, C1 controls (CSI is U+009B, OSC U+009D).
            | '\u{0}'..='\u{1f}'
            | '\u{7f}'..='\u{9f}'
            // Bidirectional controls: ALM, LRM, RLM, LRE/RLE/PDF/LRO/RLO, LRI/RLI/FSI/PDI.
            | '\u{61c}'
            | '\u{200e}'
            | '\u{200f}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2066}'..='\u{2069}'
            // Line and paragraph separators.
            | '\u{2028}'
            | '\u{2029}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed_unchanged() {
        let text = "state results_ready: 7 rows, naïve café, 日本語";
        assert!(matches!(escape(text), Cow::Borrowed(t) if t == text));
    }

    #[test]
    fn a_forged_record_stays_on_its_line_and_shows_its_escapes() {
        let forged = "\r\x1b[2K2026-01-01 INFO cvm_agent: results ready";
        assert_eq!(escape(forged), "\\r\\x1b[2K2026-01-01 INFO cvm_agent: results ready");
        assert_eq!(escape("a\nb\tc"), "a\\nb\\tc");
    }

    #[test]
    fn terminal_sequences_lose_every_control_character() {
        // OSC 52 (write the clipboard), ended by BEL and by ST; an 8-bit CSI; DEL.
        let osc = "\x1b]52;c;ZXZpbA==\x07 \x1b]0;title\x1b\\ \u{9b}31m \x7f";
        let shown = escape(osc);
        assert_eq!(shown, "\\x1b]52;c;ZXZpbA==\\x07 \\x1b]0;title\\x1b\\\\ \\u{9b}31m \\x7f");
        assert!(!shown.chars().any(|c| c.is_control()), "{shown}");
    }

    #[test]
    fn bidirectional_controls_and_separators_are_shown_as_code_points() {
        assert_eq!(escape("exe.\u{202e}txt"), "exe.\\u{202e}txt");
        for c in
            ['\u{61c}', '\u{200e}', '\u{200f}', '\u{202a}', '\u{2066}', '\u{2069}', '\u{2028}', '\u{2029}']
        {
            let shown = escape(&c.to_string()).into_owned();
            assert_eq!(shown, format!("\\u{{{:x}}}", u32::from(c)));
        }
    }

    #[test]
    fn the_rendering_is_unambiguous() {
        // The text `\x1b` and the character ESC look different.
        assert_eq!(escape("\\x1b"), "\\\\x1b");
        assert_ne!(escape("\\x1b"), escape("\x1b"));
    }
}
