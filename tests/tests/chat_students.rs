//! The chat handout's own programs, completed as a student would (`tests/students/chat/`), run
//! unchanged in the chat lab: `chatserver.py` on webserver finds its address with
//! `gethostbyname(gethostname())`, `chatclient.py` on client1–3 finds the server as
//! `chat.ttm4200.com`, both bind port 5000. They run as the unprivileged user `nobody`, as
//! students' code always does in the kit, from a private copy of their folder.
//!
//! The handout's messages carry no framing (one `send()` per message, one `recv(1024)` per read),
//! so two messages that arrive together merge, and a merged user list makes the client's
//! `json.loads` fail. The tests therefore wait until each client shows the list it should have
//! (`#ls`) before the next step, as a student typing at a terminal does.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use labnet::netns::Testbed;
use testkit::proc::Proc;

const WAIT: Duration = Duration::from_secs(10);

/// A copy of the reference chat submission that `nobody` can read.
struct Folder(PathBuf);

impl Folder {
    fn new() -> Folder {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("students/chat");
        let dir = std::env::temp_dir().join(format!("netlab-chat-students-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        for f in ["chatserver.py", "chatclient.py"] {
            fs::copy(src.join(f), dir.join(f)).unwrap();
            fs::set_permissions(dir.join(f), fs::Permissions::from_mode(0o644)).unwrap();
        }
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        Folder(dir)
    }
}

impl Drop for Folder {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Runs a student's script on `host` as `nobody`, unbuffered (a pipe would block-buffer its
/// prints), with stdin open for its `input()`.
fn student(bed: &Testbed, host: &str, folder: &Folder, script: &str) -> Proc {
    let mut cmd = bed.command(host, "setpriv");
    cmd.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
        .arg("/usr/bin/python3")
        .arg(folder.0.join(script))
        .env("PYTHONUNBUFFERED", "1")
        .current_dir(&folder.0);
    Proc::spawn_with_stdin(cmd).named(&format!("{script} on {host}"))
}

/// A handout client on `host` that registered as `name`.
fn join(bed: &Testbed, host: &str, folder: &Folder, name: &str) -> Proc {
    let mut c = student(bed, host, folder, "chatclient.py");
    // The name prompt ends without a newline: type the name, as a student does, and wait for
    // what follows it.
    c.send(name);
    c.wait_for("Connection Established!");
    c
}

/// Types `#ls` until the client prints exactly `users` (the handout prints the dict), or fails.
fn shows_users(c: &mut Proc, users: &str) {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        c.send("#ls");
        if c.wait_line(users, Duration::from_millis(300)).is_some() {
            return;
        }
    }
    panic!("the client never listed {users}; it printed:\n{}", c.log());
}

const A: &str = "'alice': '10.20.30.11'";
const B: &str = "'bob': '10.20.30.12'";
const C: &str = "'carol': '10.20.30.13'";

/// Three handout clients on client1–3 against whatever serves webserver:5000: the user list after
/// every join and leave, the room relayed to the others only, P2P to the addressee by its IP.
fn room_of_three(bed: &Testbed, folder: &Folder, server_saw: impl Fn(&str)) {
    let mut a = join(bed, "client1", folder, "alice");
    server_saw("alice");
    shows_users(&mut a, &format!("{{{A}}}"));
    let mut b = join(bed, "client2", folder, "bob");
    server_saw("bob");
    shows_users(&mut a, &format!("{{{A}, {B}}}"));
    shows_users(&mut b, &format!("{{{A}, {B}}}"));
    let mut c = join(bed, "client3", folder, "carol");
    server_saw("carol");
    for p in [&mut a, &mut b, &mut c] {
        shows_users(p, &format!("{{{A}, {B}, {C}}}"));
    }

    a.send("hello room");
    b.wait_for("incoming msg from chatserver (alice: hello room");
    c.wait_for("incoming msg from chatserver (alice: hello room");
    // The handout client sends everything after the first ':' as it is, leading space included.
    b.send("@alice: hi there: from bob");
    a.wait_for("Incoming msg (P2P) from bob: hi there: from bob");
    c.send("@bob:no space");
    b.wait_for("Incoming msg (P2P) from carol:no space");
    c.send("@nobody: hello?");
    c.wait_for("nobody is not registered");
    // Nobody hears their own room message, and a P2P message reaches only its addressee.
    assert_eq!(a.count("hello room"), 0, "{}", a.log());
    assert_eq!(c.count("hi there"), 0, "{}", c.log());
    assert_eq!(a.count("no space"), 0, "{}", a.log());

    // Carol leaves (her terminal is closed): the others get the list without her.
    c.kill();
    shows_users(&mut a, &format!("{{{A}, {B}}}"));
    shows_users(&mut b, &format!("{{{A}, {B}}}"));
}

#[test]
fn the_handouts_server_and_three_handout_clients_chat_in_the_lab() {
    let bed = labnet::testbed_or_skip!(&labnet::topo::CHAT);
    let folder = Folder::new();
    let srv = student(&bed, "webserver", &folder, "chatserver.py");
    srv.wait_for("Waiting for connection...");
    room_of_three(&bed, &folder, |name| {
        let ip = match name {
            "alice" => "10.20.30.11",
            "bob" => "10.20.30.12",
            _ => "10.20.30.13",
        };
        srv.wait_for(&format!("{name} with IP address:{ip}, has connected"));
    });
    // The server runs unprivileged, on its lab address found from its own host name.
    let ss = bed
        .run("webserver", "ss", &["-Htlnp", "sport = :5000"])
        .unwrap();
    let ss = String::from_utf8_lossy(&ss.stdout);
    assert!(ss.contains("10.20.30.3:5000"), "{ss}");
    let status = fs::read_to_string(format!("/proc/{}/status", srv.pid())).unwrap();
    let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert_eq!(
        uid.split_whitespace().skip(1).collect::<Vec<_>>(),
        ["65534"; 4],
        "{uid}"
    );
}

#[test]
fn handout_clients_chat_through_our_chat_server_in_the_lab() {
    let bed = labnet::testbed_or_skip!(&labnet::topo::CHAT);
    let folder = Folder::new();
    let mut cmd = bed.command("webserver", testkit::bin("chat-server"));
    cmd.args(["--port", "5000"]);
    let srv = Proc::spawn(cmd).named("chat-server");
    srv.wait_for("listening on");
    room_of_three(&bed, &folder, |name| {
        srv.wait_for(&format!("{name} joined from"));
    });
}

#[test]
fn our_chat_client_joins_the_handouts_server_in_the_lab() {
    let bed = labnet::testbed_or_skip!(&labnet::topo::CHAT);
    let folder = Folder::new();
    let srv = student(&bed, "webserver", &folder, "chatserver.py");
    srv.wait_for("Waiting for connection...");
    let mut a = join(&bed, "client1", &folder, "alice");
    srv.wait_for("alice with IP address:10.20.30.11, has connected");
    shows_users(&mut a, &format!("{{{A}}}"));
    // Our client finds the server by the handout's name too.
    let mut cmd = bed.command("client2", testkit::bin("chat-client"));
    cmd.args(["--server", "chat.ttm4200.com", "--name", "bob"]);
    let mut b = Proc::spawn_with_stdin(cmd).named("chat-client bob");
    b.wait_for("registered;");
    srv.wait_for("bob with IP address:10.20.30.12, has connected");
    b.wait_for("alice (10.20.30.11)");
    shows_users(&mut a, &format!("{{{A}, {B}}}"));
    a.send("hello bob");
    b.wait_for("alice: hello bob");
    b.send("@alice: psst");
    a.wait_for("Incoming msg (P2P) from bob:");
    b.send("to the room");
    a.wait_for("incoming msg from chatserver (bob: to the room");
}
