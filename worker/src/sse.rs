//! An incremental Server-Sent Events parser. Bytes arrive in arbitrary chunks; complete
//! events are handed to a callback as borrowed slices, and the buffers are reused, so the
//! steady state allocates nothing per event. An incomplete event is normal control flow:
//! its bytes wait for the next chunk — up to [`MAX_EVENT_BYTES`]: a server that streams a
//! line without end is a malformed stream, not a reason to grow without limit.

/// The largest event (its data lines and an unterminated line) a stream may send; an
/// OpenAI chunk is a few hundred bytes.
pub const MAX_EVENT_BYTES: usize = 1 << 20;

/// One dispatched event. `data` is the `data:` lines joined by `\n`.
#[derive(Debug, PartialEq, Eq)]
pub struct Event<'a> {
    /// The `event:` field, empty when absent.
    pub event: &'a [u8],
    pub data: &'a [u8],
}

#[derive(Debug, Default)]
pub struct SseParser {
    /// Bytes of a line not yet terminated.
    pending: Vec<u8>,
    data: Vec<u8>,
    event: Vec<u8>,
    /// A `data:` field was seen in the current event.
    has_data: bool,
    /// An event outgrew [`MAX_EVENT_BYTES`]; nothing more is parsed.
    overflowed: bool,
}

impl SseParser {
    pub fn new() -> SseParser {
        SseParser::default()
    }

    /// An event outgrew [`MAX_EVENT_BYTES`] (the stream is malformed).
    pub fn overflowed(&self) -> bool {
        self.overflowed
    }

    /// Feeds `input`; calls `on_event` for every event it completes.
    pub(crate) fn feed(&mut self, input: &[u8], mut on_event: impl FnMut(Event<'_>)) {
        if self.overflowed {
            return;
        }
        let mut rest = input;
        while let Some(nl) = memchr::memchr(b'\n', rest) {
            let (line, tail) = rest.split_at(nl);
            rest = &tail[1..];
            if self.pending.is_empty() {
                self.line(line, &mut on_event);
            } else {
                let mut pending = std::mem::take(&mut self.pending);
                pending.extend_from_slice(line);
                self.line(&pending, &mut on_event);
                pending.clear();
                self.pending = pending;
            }
        }
        if self.pending.len() + self.data.len() + rest.len() > MAX_EVENT_BYTES {
            self.overflowed = true;
            self.pending = Vec::new();
            self.data = Vec::new();
            return;
        }
        self.pending.extend_from_slice(rest);
    }

    // Inlined into `feed`'s loop: once the overflow checks made it larger, the compiler
    // stopped, and `benches/chunk_path` read 37-39 µs → 58-66 µs per 256-token answer with
    // usage on every chunk (this inlining brings it back).
    #[inline(always)]
    fn line(&mut self, line: &[u8], on_event: &mut impl FnMut(Event<'_>)) {
        if self.overflowed {
            return;
        }
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            if self.has_data {
                on_event(Event {
                    event: &self.event,
                    data: &self.data,
                });
            }
            self.data.clear();
            self.event.clear();
            self.has_data = false;
            return;
        }
        if line[0] == b':' {
            return; // comment
        }
        let (field, value) = match memchr::memchr(b':', line) {
            Some(c) => {
                let v = &line[c + 1..];
                (&line[..c], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"data" => {
                if self.data.len() + value.len() >= MAX_EVENT_BYTES {
                    self.overflowed = true;
                    self.data = Vec::new();
                    return;
                }
                if self.has_data {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(value);
                self.has_data = true;
            }
            b"event" => {
                self.event.clear();
                self.event.extend_from_slice(value);
            }
            _ => {} // id, retry and unknown fields do not matter to a load generator
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn collect(chunks: &[&[u8]]) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        for c in chunks {
            p.feed(c, |e| out.push((e.event.to_vec(), e.data.to_vec())));
        }
        out
    }

    #[test]
    fn an_endless_line_or_event_stops_the_parser_at_the_cap() {
        let mut p = SseParser::new();
        let chunk = vec![b'x'; 64 * 1024];
        p.feed(b"data: ", |_| panic!("no event"));
        for _ in 0..(MAX_EVENT_BYTES / chunk.len() + 2) {
            p.feed(&chunk, |_| panic!("no event"));
        }
        assert!(p.overflowed());
        assert!(p.pending.capacity() == 0, "its memory is given back");
        // Many data lines of one event count together.
        let mut p = SseParser::new();
        let line = [b"data: ".as_slice(), &chunk, b"\n"].concat();
        for _ in 0..(MAX_EVENT_BYTES / chunk.len() + 2) {
            p.feed(&line, |_| panic!("no event"));
        }
        assert!(p.overflowed());
        // A normal stream is far from it.
        let mut p = SseParser::new();
        p.feed(STREAM, |_| {});
        assert!(!p.overflowed());
    }

    const STREAM: &[u8] = b": keep-alive\n\ndata: {\"a\":1}\n\nevent: error\ndata: line1\ndata: line2\r\n\r\ndata:[DONE]\n\n";

    fn expected() -> Vec<(Vec<u8>, Vec<u8>)> {
        vec![
            (b"".to_vec(), b"{\"a\":1}".to_vec()),
            (b"error".to_vec(), b"line1\nline2".to_vec()),
            (b"".to_vec(), b"[DONE]".to_vec()),
        ]
    }

    #[test]
    fn whole_stream() {
        assert_eq!(collect(&[STREAM]), expected());
    }

    #[test]
    fn every_single_split_point() {
        for k in 0..=STREAM.len() {
            let (a, b) = STREAM.split_at(k);
            assert_eq!(collect(&[a, b]), expected(), "split at {k}");
        }
    }

    /// Events of a whole input, fed at once.
    fn whole(input: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        collect(&[input])
    }

    /// `input` cut at each of `cuts` (positions, any order).
    fn split(input: &[u8], mut cuts: Vec<usize>) -> Vec<&[u8]> {
        cuts.sort_unstable();
        let mut chunks = Vec::new();
        let mut prev = 0;
        for c in cuts {
            chunks.push(&input[prev..c]);
            prev = c;
        }
        chunks.push(&input[prev..]);
        chunks
    }

    proptest! {
        // The fuzz target, as a property: any bytes at all, cut anywhere, never panic and
        // give the events the same bytes give whole. (cargo-fuzz needs a nightly toolchain;
        // this runs on stable in every test run, 256 cases, more with PROPTEST_CASES.)
        #[test]
        fn arbitrary_bytes_split_anywhere_never_panic(
            input in proptest::collection::vec(
                prop_oneof![
                    Just(b'\n'), Just(b'\r'), Just(b':'), Just(b' '),
                    Just(b'd'), Just(b'a'), Just(b't'), any::<u8>()
                ],
                0..400,
            ),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..16),
        ) {
            let cuts = cuts.iter().map(|i| i.index(input.len() + 1)).collect();
            prop_assert_eq!(collect(&split(&input, cuts)), whole(&input));
        }

        #[test]
        fn random_splits_give_the_same_events(cuts in proptest::collection::vec(0..STREAM.len(), 0..12)) {
            prop_assert_eq!(collect(&split(STREAM, cuts)), expected());
        }
    }
}
