//! The chat lab's wire format (the handout's milestones 1–2 and the extra credit), shared by
//! `chat-server` and `chat-client` so both speak exactly the handout's protocol.
//!
//! Over TCP (port 5000):
//! - client → server, first message: the name, UTF-8 (`alice`). With authentication on, the
//!   first message is `name:password` (`alice:correct horse`): names never contain `:`, so the
//!   first `:` splits them, and the password may hold anything but a newline. The credentials
//!   cross the network in clear text, as every other chat byte does.
//! - client → server, then: chat text. A `\n` ends a message when the client sends one; a client
//!   that never sends `\n` (the handout's) has each read taken as one message.
//! - server → clients: `!` + a JSON object `{name: ip}` after every join and leave, room messages
//!   as `<name>: <msg> ` (the handout's trailing space), refusals as `ERROR: <why>`. Our server
//!   ends each with `\n` and writes it in one call; the handout's server ends nothing, so a reader
//!   must also split a `!{json}` glued to other text ([`ServerStream`]).
//!
//! Over UDP (port 5000): one datagram = one peer-to-peer message, the text alone; the receiver
//! names the sender by looking its source IP up in the user list.

use std::collections::VecDeque;

use super::WireError;

/// Longest name, in characters.
pub const MAX_NAME_CHARS: usize = 20;
/// Default longest message a server accepts, in bytes.
pub const MAX_MESSAGE: usize = 64 * 1024;
/// What starts a user-list message.
pub const USERS_PREFIX: u8 = b'!';
/// What starts a refusal.
pub const ERROR_PREFIX: &str = "ERROR: ";
/// What a receiver calls a peer whose IP is not in the user list (the handout's word).
pub const NON_REGISTERED: &str = "Non-registered";

/// Checks a name against the lab's rules; the error says why, ready for `ERROR: <why>`.
///
/// Beyond non-empty, short, unique whatever the case ([`same_name`], checked by the server), no
/// whitespace and no control characters: a leading `!` would make relayed lines look like
/// user-list updates, a `:` would let `a: b` forge the sender of a room message (and would split
/// credentials), [`RESERVED_NAMES`] would pass for the server, and [`is_format_char`]s would
/// make one name look like another.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty name".into());
    }
    let chars = name.chars().count();
    if chars > MAX_NAME_CHARS {
        return Err(format!(
            "name longer than {MAX_NAME_CHARS} characters ({chars})"
        ));
    }
    if name.chars().any(char::is_whitespace) {
        return Err("name contains whitespace".into());
    }
    if name.chars().any(char::is_control) {
        return Err("name contains a control character".into());
    }
    if name.starts_with('!') {
        return Err("name starts with '!'".into());
    }
    if name.contains(':') {
        return Err("name contains ':'".into());
    }
    if name.chars().any(is_format_char) {
        return Err("name contains an invisible or bidi format character".into());
    }
    if let Some(word) = RESERVED_NAMES.iter().find(|w| same_name(name, w)) {
        return Err(format!("the name '{word}' is reserved"));
    }
    Ok(())
}

/// Names no user may take, in any case: a user called `ERROR` makes every room message of theirs
/// (`ERROR: hi `) read as a refusal from the server, and `Non-registered` is what receivers call a
/// peer that is not in the user list.
pub const RESERVED_NAMES: &[&str] = &["ERROR", NON_REGISTERED];

/// True when two names differ only in case (`Alice` and `alice`, `STRASSE` and `straße`): one
/// of them is refused, so that nobody can pass for someone else in the user list.
pub fn same_name(a: &str, b: &str) -> bool {
    fold(a) == fold(b)
}

/// A name in one case: upper then lower, so that `ß` and `SS` meet at `ss`.
fn fold(name: &str) -> String {
    name.to_uppercase().to_lowercase()
}

/// Invisible characters that reorder or hide text (Unicode general category Cf, the ones a
/// name could hold): bidi embeddings, overrides and isolates (U+202A–U+202E, U+2066–U+2069, the
/// marks U+200E, U+200F, U+061C) show `ali\u{202e}ec` as `alice`; zero-width ones
/// (U+200B–U+200D, U+2060–U+2064, U+FEFF, U+00AD, U+180E) make two names look equal.
pub fn is_format_char(c: char) -> bool {
    matches!(
        c,
        '\u{00ad}'
            | '\u{061c}'
            | '\u{180e}'
            | '\u{200b}'..='\u{200f}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206f}'
            | '\u{feff}'
            | '\u{fff9}'..='\u{fffb}'
            | '\u{e0001}'
            | '\u{e0020}'..='\u{e007f}'
    )
}

/// Splits a first message into name and password at the first `:` (`alice:pw` → `("alice",
/// Some("pw"))`; `alice` → `("alice", None)`).
pub fn split_credentials(first: &str) -> (&str, Option<&str>) {
    match first.split_once(':') {
        Some((name, password)) => (name, Some(password)),
        None => (first, None),
    }
}

/// The first message a client sends: `name` or `name:password` (no newline: the handout's
/// server takes one read as the name).
pub fn encode_credentials(name: &str, password: Option<&str>) -> String {
    match password {
        Some(p) => format!("{name}:{p}"),
        None => name.to_owned(),
    }
}

/// `!{"alice": "10.20.30.11", "bob": "10.20.30.12"}\n`, in join order, spaced like Python's
/// `json.dumps` so a capture looks like the handout's server.
pub fn encode_users<'a>(users: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut s = String::from("!{");
    for (i, (name, ip)) in users.into_iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        // serde_json escapes quotes, backslashes and control characters: the list always parses.
        s.push_str(&json_string(name));
        s.push_str(": ");
        s.push_str(&json_string(ip));
    }
    s.push_str("}\n");
    s
}

fn json_string(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

/// A room message as relayed: `<name>: <msg> \n` (the handout's trailing space kept).
pub fn encode_room(name: &str, text: &str) -> String {
    format!("{name}: {text} \n")
}

/// A refusal: `ERROR: <why>\n`.
pub fn encode_error(why: &str) -> String {
    format!("{ERROR_PREFIX}{why}\n")
}

/// Parses the JSON object of a user list (without the `!`), keeping the server's order.
pub fn parse_users(json: &str) -> Result<Vec<(String, String)>, WireError> {
    let bad = |why: &str| WireError::Malformed(format!("user list: {why}"));
    let value: serde_json::Value =
        serde_json::from_str(json.trim_end()).map_err(|e| bad(&e.to_string()))?;
    let obj = value.as_object().ok_or_else(|| bad("not a JSON object"))?;
    let mut users: Vec<(String, String)> = Vec::with_capacity(obj.len());
    for (name, ip) in obj {
        let ip = ip
            .as_str()
            .ok_or_else(|| bad(&format!("address of '{name}' is not a string")))?;
        users.push((name.clone(), ip.to_owned()));
    }
    // serde_json's map is sorted by key; the order on the wire was the join order. Recover it.
    let order = key_order(json);
    users.sort_by_key(|(name, _)| order.iter().position(|k| k == name).unwrap_or(usize::MAX));
    Ok(users)
}

/// The top-level keys of a JSON object in the order they appear.
fn key_order(json: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut de = serde_json::Deserializer::from_str(json.trim_end());
    // A map visitor that records keys in order.
    struct Keys<'a>(&'a mut Vec<String>);
    impl<'de> serde::de::Visitor<'de> for Keys<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            while let Some((k, _)) = map.next_entry::<String, serde::de::IgnoredAny>()? {
                self.0.push(k);
            }
            Ok(())
        }
    }
    let _ = serde::Deserializer::deserialize_map(&mut de, Keys(&mut keys));
    keys
}

/// Where the JSON object starting at `bytes[0] == b'{'` ends (index one past its `}`), matching
/// braces outside strings and honouring `\` escapes inside them.
pub fn json_object_end(bytes: &[u8]) -> Result<usize, WireError> {
    if bytes.first() != Some(&b'{') {
        return Err(WireError::Malformed("expected '{'".into()));
    }
    BraceScan::default().run(bytes).ok_or(WireError::Incomplete)
}

/// Brace matching that can stop at the end of one read and go on with the next where it
/// stopped, so a user list cut by TCP is scanned once, not once per read.
#[derive(Debug, Clone, Default)]
struct BraceScan {
    /// Bytes of the object scanned so far.
    pos: usize,
    depth: usize,
    in_string: bool,
    escaped: bool,
}

impl BraceScan {
    /// Scans `object[self.pos..]` (`object[0]` is the opening `{`); `Some(end)` one past the
    /// brace that closes it.
    fn run(&mut self, object: &[u8]) -> Option<usize> {
        while let Some(&b) = object.get(self.pos) {
            self.pos += 1;
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                } else if b == b'\\' {
                    self.escaped = true;
                } else if b == b'"' {
                    self.in_string = false;
                }
                continue;
            }
            match b {
                b'"' => self.in_string = true,
                b'{' | b'[' => self.depth += 1,
                b'}' | b']' => {
                    self.depth = self.depth.saturating_sub(1);
                    if self.depth == 0 {
                        return Some(self.pos);
                    }
                }
                _ => {}
            }
        }
        None
    }
}

/// One message from a chat server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerMsg {
    /// The active users, `(name, ip)` in the server's order.
    Users(Vec<(String, String)>),
    /// A room message: the sender (text before the first `: `) and the text (trailing space and
    /// newline removed). `from` is `None` when the line has no `: `.
    Room {
        /// Who sent it.
        from: Option<String>,
        /// What they said.
        text: String,
    },
    /// `ERROR: <why>`.
    Error(String),
    /// A `!` line whose JSON does not parse (reported, not fatal).
    BadUsers(String),
}

/// Longest unfinished message a reader keeps waiting for, bytes.
const MAX_PENDING: usize = 1 << 20;

/// Longest user list an unframed reader waits for when TCP cut it: 1,000 users with 20-character
/// names and IPv6 addresses fit.
const MAX_LIST: usize = 64 * 1024;

/// Splits the byte stream from a chat server into messages, whether the server ends them with
/// `\n` (ours) or not (the handout's).
///
/// The stream counts as framed once a user list is followed by `\n` (ours sends one right after
/// a join); then every line is one message, and since a client's message never holds a `\n`,
/// nobody but the server can start a line.
///
/// Unframed (the handout's server), each read is one message, and the server's user list `!{…}`
/// must be told apart from a room message `name: text ` whose text holds a `!{…}` too: another
/// user typing `nice weather !{"bob": "<their own IP>"}` must not move bob's address. A
/// user list counts only at a message boundary:
/// - at the start of a read, or right after another user list, and not followed by a space (a
///   relayed room message always ends with the server's space, a list never does);
/// - glued after a room message (the handout's server writes a room message and a user list
///   back to back, and one read may get both): only when the list ends the read, or another list
///   follows it. A list inside someone's text is followed by at least the server's space.
///
/// If TCP cut a peer's text right after its fake list's closing brace (a long message spans
/// segments, and the attacker chooses its length), the next read starts with the server's space.
/// So a read that ends with a user list is held ([`is_holding`](Self::is_holding)) until the next
/// read shows whether a space follows, or until the caller, whose read timed out (100 ms is
/// plenty) or ended, calls [`flush`](Self::flush). The first list is not held: it answers the
/// client's registration, before anyone else can write to it.
///
/// Anything else is text. A list cut at the end of a read waits for the next read (at most
/// [`MAX_LIST`] bytes). Every byte is scanned a bounded number of times, so hostile text costs
/// linear time (256 KiB of `a!{` once took 14.7 s when every `!{` was scanned to the
/// end). What a boundary cannot tell (a peer who gets the server's segments cut exactly around
/// its fake list) the client checks on the list itself: ours has to be in it.
#[derive(Debug, Default)]
pub struct ServerStream {
    buf: Vec<u8>,
    framed: bool,
    /// Framed: bytes of `buf` already searched for `\n`.
    scanned: usize,
    /// Unframed: `buf` is a user list cut by TCP, scanned this far.
    cut: Option<Cut>,
    /// Unframed: a read that ended with a user list, waiting for the next read to say whether
    /// the list was the server's.
    held: Option<Held>,
    /// User lists taken so far.
    lists_seen: usize,
    /// Unframed: the last read ended right after a user list at a boundary (if the next read
    /// starts with `\n`, the server is ours and frames its messages).
    after_list: bool,
}

/// A read ending with a glued user list, both ways of reading it.
#[derive(Debug)]
struct Held {
    /// The bytes, for when they were one room message after all.
    raw: Vec<u8>,
    /// The room messages and user lists, for when the list was the server's.
    msgs: Vec<ServerMsg>,
}

/// A user list cut at the end of a read.
#[derive(Debug)]
struct Cut {
    scan: BraceScan,
    /// It came glued after a room message: it must end a read.
    glued: bool,
}

impl ServerStream {
    /// A reader that has seen nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// True once the server has shown that it ends messages with `\n`.
    pub fn is_framed(&self) -> bool {
        self.framed
    }

    /// True while a read that ended with a user list is held back (see [`flush`](Self::flush)).
    pub fn is_holding(&self) -> bool {
        self.held.is_some()
    }

    /// The server said nothing more for a moment (the caller's read timed out) or closed: a
    /// held user list was the server's. Returns what was held.
    pub fn flush(&mut self) -> Vec<ServerMsg> {
        self.held.take().map(|h| h.msgs).unwrap_or_default()
    }

    /// Adds the bytes of one read and returns the messages they complete.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<ServerMsg> {
        let mut out = Vec::new();
        let mut bytes = bytes;
        if bytes.is_empty() {
            return out;
        }
        if std::mem::take(&mut self.after_list) && !self.framed && bytes.first() == Some(&b'\n') {
            // TCP cut our server's user list from its newline: framed from here on.
            out.extend(self.flush());
            self.framed = true;
            bytes = &bytes[1..];
        }
        if let Some(held) = self.held.take() {
            match bytes.split_first() {
                // The server's space after a room message: the "list" was someone's text.
                Some((b' ', rest)) => {
                    let mut raw = held.raw;
                    raw.push(b' ');
                    push_text(&raw, &mut out);
                    bytes = rest;
                }
                _ => out.extend(held.msgs),
            }
        }
        self.buf.extend_from_slice(bytes);
        if !self.framed {
            self.split_unframed(&mut out);
        }
        if self.framed {
            self.split_lines(&mut out);
        }
        out
    }

    fn split_lines(&mut self, out: &mut Vec<ServerMsg>) {
        // One pass over the new bytes and one drain at the end: draining line by line would move
        // the rest of the buffer once per line.
        let mut start = 0;
        let mut from = self.scanned.max(start);
        while let Some(nl) = self.buf[from..].iter().position(|&b| b == b'\n') {
            let end = from + nl;
            let line = String::from_utf8_lossy(&self.buf[start..end]);
            let line = line.strip_suffix('\r').unwrap_or(&line);
            if !line.is_empty() {
                out.push(classify(line));
            }
            start = end + 1;
            from = start;
        }
        self.buf.drain(..start);
        self.scanned = self.buf.len();
        if self.buf.len() > MAX_PENDING {
            let rest = String::from_utf8_lossy(&self.buf).into_owned();
            self.buf.clear();
            self.scanned = 0;
            out.push(classify(&rest));
        }
    }

    fn split_unframed(&mut self, out: &mut Vec<ServerMsg>) {
        let buf = std::mem::take(&mut self.buf);
        // Lists at the start of the read (or the rest of one cut at the end of the last read).
        let (glued, resume) = match self.cut.take() {
            Some(cut) => (cut.glued, Some(cut.scan)),
            None => (false, None),
        };
        let mut first = Vec::new();
        let text = match self.lists(&buf, 0, glued, resume, &mut first) {
            Lists::Text(at) => at,
            Lists::Keep(from) => {
                self.keep(buf, from);
                out.append(&mut first);
                return;
            }
        };
        self.after_list = text == buf.len() && !first.is_empty() && !glued;
        if text == buf.len() && !first.is_empty() && (glued || self.lists_seen > first.len()) {
            // Lists that end the read are held as below, except the very first (a client's
            // registration: nobody else can write to it before the server has listed it).
            self.held = Some(Held {
                raw: buf,
                msgs: first,
            });
            return;
        }
        out.append(&mut first);
        // The rest is text, except a list glued at its end: only the last ` !{` can start one,
        // so one scan decides.
        let rest = &buf[text..];
        let last = if rest.ends_with(b" !") {
            Some(rest.len() - 2)
        } else {
            rest.windows(3).rposition(|w| w == b" !{")
        };
        if let Some(p) = last {
            let at = text + p + 1;
            let mut lists = Vec::new();
            match self.lists(&buf, at, true, None, &mut lists) {
                // The read ends with a list cut by TCP, kept for the next read.
                Lists::Keep(from) => {
                    push_text(&buf[text..at], out);
                    out.append(&mut lists);
                    self.keep(buf, from);
                    return;
                }
                // The read ends with the list: the server's, unless the next read starts with
                // the space the server puts after a room message (a peer's text cut by TCP
                // right after its closing brace). Held until the next read or `flush`.
                Lists::Text(end) if end == buf.len() => {
                    let mut msgs = Vec::new();
                    push_text(&buf[text..at], &mut msgs);
                    msgs.append(&mut lists);
                    self.held = Some(Held {
                        raw: rest.to_vec(),
                        msgs,
                    });
                    return;
                }
                Lists::Text(_) => {}
            }
        }
        push_text(rest, out);
    }

    /// Keeps `buf[from..]` for the next read, in place: a list trickled in one byte per read is
    /// moved once, not copied whole on every read (which made it quadratic).
    fn keep(&mut self, mut buf: Vec<u8>, from: usize) {
        buf.drain(..from);
        self.buf = buf;
    }

    /// Takes the user lists that follow one another from `buf[at..]` into `out`. Returns where
    /// the text after them begins, or what to keep when the read is used up: a cut list for the
    /// next read, or, once the server showed it frames its messages, the rest for the framed
    /// reader.
    fn lists(
        &mut self,
        buf: &[u8],
        mut at: usize,
        glued: bool,
        mut resume: Option<BraceScan>,
        out: &mut Vec<ServerMsg>,
    ) -> Lists {
        loop {
            if &buf[at..] == b"!" {
                // TCP cut right after the `!`: the next read says whether a list follows.
                self.cut = Some(Cut {
                    scan: BraceScan::default(),
                    glued,
                });
                return Lists::Keep(at);
            }
            if !buf[at..].starts_with(b"!{") {
                break;
            }
            let mut scan = resume.take().unwrap_or_default();
            let Some(len) = scan.run(&buf[at + 1..]) else {
                if buf.len() - at <= MAX_LIST {
                    self.cut = Some(Cut { scan, glued });
                    return Lists::Keep(at);
                }
                return Lists::Text(at);
            };
            let end = at + 1 + len;
            let next = &buf[end..];
            let boundary = match next.first() {
                None => true,
                Some(_) if next.starts_with(b"!{") => true,
                // Our server's newline; never after text (a room message is not ours then).
                Some(b'\n') => !glued,
                Some(b' ') => false,
                Some(_) => !glued,
            };
            if !boundary {
                return Lists::Text(at);
            }
            let Ok(users) = parse_users(&String::from_utf8_lossy(&buf[at + 1..end])) else {
                return Lists::Text(at);
            };
            out.push(ServerMsg::Users(users));
            self.lists_seen += 1;
            at = end;
            if buf.get(at) == Some(&b'\n') {
                // Our server: from now on, one line = one message.
                self.framed = true;
                self.scanned = 0;
                return Lists::Keep(at + 1);
            }
        }
        Lists::Text(at)
    }
}

/// Where [`ServerStream::lists`] stopped.
enum Lists {
    /// Text begins here (the end of the read when nothing follows the lists).
    Text(usize),
    /// The read is used up: the bytes from here on wait for the next read.
    Keep(usize),
}

/// Unframed text: room messages (and a refusal), never a user list, whatever it starts with;
/// the boundary rules of [`ServerStream`] have already taken every list there was.
fn push_text(bytes: &[u8], out: &mut Vec<ServerMsg>) {
    let text = String::from_utf8_lossy(bytes);
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if !line.trim().is_empty() {
            out.push(classify_text(line));
        }
    }
}

/// A line of a framed stream: only the server starts lines, so `!` is a user list.
fn classify(line: &str) -> ServerMsg {
    if let Some(json) = line.strip_prefix('!') {
        return match parse_users(json) {
            Ok(users) => ServerMsg::Users(users),
            Err(_) => ServerMsg::BadUsers(line.to_owned()),
        };
    }
    classify_text(line)
}

fn classify_text(line: &str) -> ServerMsg {
    if let Some(why) = line.strip_prefix(ERROR_PREFIX) {
        return ServerMsg::Error(why.to_owned());
    }
    let line = line.strip_suffix(' ').unwrap_or(line);
    match line.split_once(": ") {
        Some((from, text)) => ServerMsg::Room {
            from: Some(from.to_owned()),
            text: text.to_owned(),
        },
        None => ServerMsg::Room {
            from: None,
            text: line.to_owned(),
        },
    }
}

/// Why a client's byte stream was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// More than the limit arrived without a `\n`.
    TooLong(usize),
    /// The bytes are not UTF-8.
    NotUtf8,
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::TooLong(max) => write!(f, "message longer than {max} bytes"),
            FrameError::NotUtf8 => f.write_str("message is not valid UTF-8"),
        }
    }
}

/// Splits what a client sends into messages: by `\n` once the client has sent one (then a
/// partial line waits for its end), otherwise one read = one message (the handout's client
/// never sends `\n`). A UTF-8 character cut at the end of a read waits for the next read.
#[derive(Debug)]
pub struct ClientFramer {
    buf: Vec<u8>,
    lines: bool,
    max: usize,
    ready: VecDeque<String>,
}

impl ClientFramer {
    /// A framer refusing messages longer than `max` bytes.
    pub fn new(max: usize) -> Self {
        ClientFramer {
            buf: Vec::new(),
            lines: false,
            max,
            ready: VecDeque::new(),
        }
    }

    /// Adds one read's bytes; complete messages are then available from [`next_message`](Self::next_message).
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), FrameError> {
        if bytes.contains(&b'\n') {
            self.lines = true;
        }
        self.buf.extend_from_slice(bytes);
        if self.lines {
            // One pass and one drain: draining line by line would move the rest of the buffer
            // once per line (quadratic in a read full of newlines).
            let mut start = 0;
            while let Some(nl) = self.buf[start..].iter().position(|&b| b == b'\n') {
                if nl > self.max {
                    return Err(FrameError::TooLong(self.max));
                }
                let mut line = &self.buf[start..start + nl];
                start += nl + 1;
                if line.last() == Some(&b'\r') {
                    line = &line[..line.len() - 1];
                }
                // Empty lines are kept: as a first message, an empty line is an empty name.
                let text = std::str::from_utf8(line).map_err(|_| FrameError::NotUtf8)?;
                self.ready.push_back(text.to_owned());
            }
            self.buf.drain(..start);
            if self.buf.len() > self.max {
                return Err(FrameError::TooLong(self.max));
            }
            return Ok(());
        }
        if self.buf.len() > self.max {
            return Err(FrameError::TooLong(self.max));
        }
        let keep = match std::str::from_utf8(&self.buf) {
            Ok(_) => 0,
            // error_len() None: the bytes end in the middle of a character.
            Err(e) if e.error_len().is_none() => self.buf.len() - e.valid_up_to(),
            Err(_) => return Err(FrameError::NotUtf8),
        };
        let tail = self.buf.split_off(self.buf.len() - keep);
        let whole = std::mem::replace(&mut self.buf, tail);
        let text = String::from_utf8(whole).map_err(|_| FrameError::NotUtf8)?;
        if !text.is_empty() {
            self.ready.push_back(text);
        }
        Ok(())
    }

    /// The next complete message, if any.
    pub fn next_message(&mut self) -> Option<String> {
        self.ready.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_rules() {
        for good in ["alice", "a\"b\\c", "Ærøskøbing", "x".repeat(20).as_str()] {
            assert_eq!(check_name(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "a b",
            "a\tb",
            "a\u{7}",
            "!x",
            "a:b",
            "x".repeat(21).as_str(),
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn users_round_trip_with_awkward_names() {
        let users = [("zed", "10.0.0.1"), ("a\"b\\c", "::1"), ("bob", "1.2.3.4")];
        let line = encode_users(users);
        assert!(line.starts_with("!{\"zed\": \"10.0.0.1\", "), "{line}");
        assert!(line.ends_with("}\n"));
        let parsed = parse_users(&line[1..]).unwrap();
        let want: Vec<(String, String)> = users
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert_eq!(parsed, want);
        assert_eq!(encode_users([]), "!{}\n");
    }

    #[test]
    fn room_and_error_encodings() {
        assert_eq!(encode_room("alice", "hi"), "alice: hi \n");
        assert_eq!(encode_error("empty name"), "ERROR: empty name\n");
        assert_eq!(split_credentials("al:p:w"), ("al", Some("p:w")));
        assert_eq!(split_credentials("al"), ("al", None));
        assert_eq!(encode_credentials("al", Some("pw")), "al:pw");
    }

    #[test]
    fn brace_matching_ignores_braces_in_strings() {
        assert_eq!(json_object_end(br#"{"a}": "{\"}"}rest"#), Ok(14));
        assert_eq!(json_object_end(br#"{"a": "b"#), Err(WireError::Incomplete));
        assert!(matches!(
            json_object_end(b"x"),
            Err(WireError::Malformed(_))
        ));
    }

    #[test]
    fn framed_stream_splits_lines() {
        let mut s = ServerStream::new();
        let msgs = s.push(b"!{\"a\": \"1.1.1.1\"}\nbob: hi \nbob: h");
        assert!(s.is_framed());
        assert_eq!(
            msgs,
            vec![
                ServerMsg::Users(vec![("a".into(), "1.1.1.1".into())]),
                ServerMsg::Room {
                    from: Some("bob".into()),
                    text: "hi".into()
                }
            ]
        );
        let msgs = s.push(b"o !{} \nERROR: x\n");
        assert_eq!(
            msgs,
            vec![
                ServerMsg::Room {
                    from: Some("bob".into()),
                    text: "ho !{}".into()
                },
                ServerMsg::Error("x".into())
            ]
        );
    }

    #[test]
    fn unframed_stream_cuts_glued_user_lists() {
        let mut s = ServerStream::new();
        let mut msgs = s.push(b"!{\"a\": \"1\"}bob: hi !{\"a\": \"1\", \"b}\": \"2\"}");
        assert!(!s.is_framed());
        // The list that ends the read waits for the next read (or a flush).
        assert!(s.is_holding());
        msgs.extend(s.flush());
        assert_eq!(
            msgs,
            vec![
                ServerMsg::Users(vec![("a".into(), "1".into())]),
                ServerMsg::Room {
                    from: Some("bob".into()),
                    text: "hi".into()
                },
                ServerMsg::Users(vec![("a".into(), "1".into()), ("b}".into(), "2".into())]),
            ]
        );
        // A list cut in two by TCP waits for its second half.
        assert_eq!(s.push(b"carol: yo !{\"a\": "), vec![room("carol", "yo")]);
        assert_eq!(s.push(b"\"9\"}"), vec![]);
        assert_eq!(
            s.flush(),
            vec![ServerMsg::Users(vec![("a".into(), "9".into())])]
        );
    }

    fn room(from: &str, text: &str) -> ServerMsg {
        ServerMsg::Room {
            from: Some(from.into()),
            text: text.into(),
        }
    }

    #[test]
    fn client_framer_reads_raw_then_lines() {
        let mut f = ClientFramer::new(10);
        f.push(b"alice").unwrap();
        assert_eq!(f.next_message().as_deref(), Some("alice"));
        f.push(b"hello\nwor").unwrap();
        assert_eq!(f.next_message().as_deref(), Some("hello"));
        assert_eq!(f.next_message(), None);
        f.push(b"ld\r\n\n").unwrap();
        assert_eq!(f.next_message().as_deref(), Some("world"));
        assert_eq!(f.next_message().as_deref(), Some(""));
        assert_eq!(f.push(b"0123456789ab"), Err(FrameError::TooLong(10)));
    }

    #[test]
    fn client_framer_waits_for_cut_characters_and_refuses_bad_utf8() {
        let mut f = ClientFramer::new(100);
        let e = "é".as_bytes();
        f.push(&[b'a', e[0]]).unwrap();
        assert_eq!(f.next_message().as_deref(), Some("a"));
        f.push(&[e[1]]).unwrap();
        assert_eq!(f.next_message().as_deref(), Some("é"));
        assert_eq!(f.push(&[0xff, b'x']), Err(FrameError::NotUtf8));
    }
}
