//! An error in a text file (a scenario file, a sim profile, a catalog) as one line that
//! says where: the parsers' own renderings draw the line over several, with a caret under
//! the span, which a log line or a one-line error cannot carry.

use std::ops::Range;

/// `line 3 (max_concurrency = "x"): <message>`, from the text, the error's byte span (if
/// the parser gave one) and its message. The quoted line is cut at 80 characters.
pub fn located(text: &str, span: Option<Range<usize>>, message: &str) -> String {
    let message = crate::clip(&message.trim().replace('\n', " "), 400);
    let Some(span) = span else {
        return message;
    };
    let mut start = span.start.min(text.len());
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    let line_no = text[..start].matches('\n').count() + 1;
    let line = text.lines().nth(line_no - 1).unwrap_or("").trim();
    let mut shown: String = line.chars().take(80).collect();
    if shown.len() < line.len() {
        shown.push('…');
    }
    format!("line {line_no} ({shown}): {message}")
}

#[cfg(test)]
mod tests {
    use super::located;

    #[test]
    fn names_the_line_and_quotes_it() {
        let text = "[run]\nmax_concurrency = \"x\"\n";
        let at = text.find('"').expect("quote");
        assert_eq!(
            located(text, Some(at..at + 3), "expected a number\n"),
            "line 2 (max_concurrency = \"x\"): expected a number"
        );
        assert_eq!(located(text, None, "bad"), "bad");
        // A span past the end, or inside a character, is not a panic.
        assert!(located("é", Some(1..9), "m").starts_with("line 1"));
        let long = "k = \"".to_owned() + &"y".repeat(200);
        assert!(located(&long, Some(0..1), "m").contains("…"));
    }
}
