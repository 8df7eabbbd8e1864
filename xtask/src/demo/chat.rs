//! The chat lab, on the `chat` topology: chat-server on `webserver`, three clients.
//! Milestone 3 (room and peer-to-peer delivery, the user list) and the milestone 4 capture
//! questions a program can answer (the SYN/SYN-ACK of a client's connection, the UDP header).
//!
//! The demo is a short list of steps (the server, three clients joining, a room message and a
//! peer-to-peer one, a client leaving, the captures); each prints exactly what a student would
//! see, in that order.

use std::io::Write as _;
use std::net::IpAddr;
use std::time::Duration;

use labnet::error::Context as _;
use labnet::pcap;
use labnet::topo::{self, CHAT};
use labnet::{Error, Result};

use super::ctx::{Ctx, args, line, ok_if, recv_lines};
use crate::capture::Capture;
use crate::lab::Site;
use crate::proc::Bg;

const LIMIT: Duration = Duration::from_secs(20);

/// A chat-client and the name it joined with.
type Client = (Bg, &'static str);

/// Types a line into a chat-client.
fn say(bg: &mut Bg, text: &str) -> Result<()> {
    let w = bg
        .stdin()
        .ok_or_else(|| Error::msg("chat-client has no stdin"))?;
    writeln!(w, "{text}").context("write to chat-client")?;
    w.flush().context("write to chat-client")
}

/// The chat demo.
pub fn chat(ctx: &mut Ctx) -> Result<()> {
    let mut site = ctx.bring_up(&CHAT)?;
    start_chat_server(ctx, &mut site)?;
    let port = topo::CHAT_PORT;
    let srv_cap = ctx.capture(
        &site,
        "webserver",
        &format!("tcp port {port}"),
        "chat-server.pcap",
    );
    let p2p_cap = ctx.capture(
        &site,
        "client3",
        &format!("udp port {port}"),
        "client3.pcap",
    );
    let mut clients = join_three_clients(ctx, &site)?;
    check_joins(ctx, &clients);
    let p2p = talk(ctx, &site, &mut clients)?;
    check_delivery(ctx, &site, &clients, p2p);
    carol_leaves(ctx, &site, clients)?;
    check_handshakes(ctx, &site, srv_cap);
    check_p2p_datagram(ctx, &site, p2p_cap);
    Ok(())
}

/// Our chat-server on webserver:5000, kept until the lab goes down.
fn start_chat_server(ctx: &mut Ctx, site: &mut Site) -> Result<()> {
    let port = topo::CHAT_PORT.to_string();
    let mut srv_args = args(&["--port", &port]);
    if !site.netns() {
        srv_args.extend(args(&["--bind", &site.addr("webserver").to_string()]));
    }
    ctx.r
        .command(&site.display("webserver"), &line("chat-server", &srv_args));
    let bg = site.spawn("webserver", "chat-server", &srv_args)?;
    site.keep(bg);
    site.await_listen("webserver", topo::CHAT_PORT, LIMIT)
}

/// alice, bob and carol join from client1..3, one at a time: each join is heard by everyone
/// already in the room before the next one.
fn join_three_clients(ctx: &mut Ctx, site: &Site) -> Result<Vec<Client>> {
    let names = [
        ("client1", "alice"),
        ("client2", "bob"),
        ("client3", "carol"),
    ];
    let mut clients: Vec<Client> = Vec::new();
    for (host, name) in names {
        let mut a = args(&["--server", &site.name("webserver"), "--name", name]);
        if !site.netns() {
            a.extend(args(&["--bind", &site.addr(host).to_string()]));
        }
        ctx.r.command(&site.display(host), &line("chat-client", &a));
        let mut bg = site.spawn_stdin(host, "chat-client", &a)?;
        bg.wait_output("registered", LIMIT)?;
        // Everyone already in the room hears about the newcomer: wait for that before going on.
        for (prev, _) in clients.iter_mut() {
            prev.wait_output(&format!("{name} joined"), LIMIT)?;
        }
        clients.push((bg, name));
    }
    Ok(clients)
}

fn check_joins(ctx: &mut Ctx, clients: &[Client]) {
    ctx.r.observe("every join is announced to the clients already in the room (the server's '!{...}' user list)");
    let alice = clients[0].0.stdout();
    let joined = alice.contains("bob joined") && alice.contains("carol joined");
    ctx.r.check(
        "chat",
        "the user list updates on every join",
        ok_if(
            joined,
            "alice saw bob and carol join".into(),
            "alice missed a join".into(),
        ),
    );
}

/// alice talks to the room; bob sends carol a peer-to-peer message. Returns whether carol
/// printed it in time.
fn talk(ctx: &mut Ctx, site: &Site, clients: &mut [Client]) -> Result<Result<()>> {
    ctx.r.command(
        &site.display("client1"),
        "hello room    # typed in alice's chat-client",
    );
    say(&mut clients[0].0, "hello room")?;
    for (bg, _) in clients.iter_mut().skip(1) {
        bg.wait_output("alice: hello room", LIMIT)?;
    }
    ctx.r.command(
        &site.display("client2"),
        "@carol: psst    # typed in bob's chat-client: peer-to-peer over UDP",
    );
    say(&mut clients[1].0, "@carol: psst")?;
    let p2p = clients[2].0.wait_output("psst", LIMIT);
    for (bg, name) in clients.iter() {
        ctx.r.say(&format!("  {name} printed:"));
        ctx.r.output(&bg.stdout(), 8);
    }
    Ok(p2p)
}

fn check_delivery(ctx: &mut Ctx, site: &Site, clients: &[Client], p2p: Result<()>) {
    ctx.r.observe("the room message reaches bob and carol through the server; 'psst' goes straight from bob to carol, who names the sender from the user list");
    let room: Vec<bool> = clients
        .iter()
        .map(|(bg, _)| {
            recv_lines(&bg.stdout())
                .iter()
                .any(|r| r.text.contains("alice: hello room"))
        })
        .collect();
    ctx.r.check(
        "chat",
        "a room message reaches every other client, not its sender",
        ok_if(
            room == [false, true, true],
            "bob and carol got 'alice: hello room'".into(),
            format!("received by alice/bob/carol: {room:?}"),
        ),
    );
    let bob_ip = site.addr("client2");
    let carol_line = recv_lines(&clients[2].0.stdout())
        .into_iter()
        .find(|r| r.text.contains("psst"));
    ctx.r.check(
        "chat",
        "a peer-to-peer message reaches only its addressee, named from the user list",
        match (&p2p, carol_line) {
            (Ok(()), Some(r))
                if r.text.contains("bob")
                    && r.text.contains(&bob_ip.to_string())
                    && !clients[0].0.stdout().contains("psst") =>
            {
                Ok(r.text)
            }
            (_, Some(r)) => Err(format!("carol printed '{}'", r.text)),
            (Err(e), None) => Err(e.to_string()),
            (Ok(()), None) => Err("carol got no P2P line".into()),
        },
    );
}

/// carol ends her client (end of input): alice and bob see her leave; then everyone leaves.
fn carol_leaves(ctx: &mut Ctx, site: &Site, mut clients: Vec<Client>) -> Result<()> {
    ctx.r
        .command(&site.display("client3"), "^D    # carol leaves");
    let (mut carol, _) = clients.pop().ok_or_else(|| Error::msg("no carol"))?;
    carol.close_stdin();
    let left = clients[0]
        .0
        .wait_output("carol left", LIMIT)
        .and_then(|()| clients[1].0.wait_output("carol left", LIMIT));
    ctx.r.check(
        "chat",
        "the user list updates when a client leaves",
        left.map(|()| "alice and bob saw 'carol left'".to_owned())
            .map_err(|e| e.to_string()),
    );
    carol.finish(Duration::from_secs(5))?;
    for (bg, _) in clients.iter_mut() {
        bg.close_stdin();
        bg.finish(Duration::from_secs(5))?;
    }
    Ok(())
}

/// Milestone 4 on the server's capture: one handshake per client, client1's first.
fn check_handshakes(ctx: &mut Ctx, site: &Site, cap: Result<Capture>) {
    let first = "the capture on the server shows client1's SYN / SYN-ACK / ACK";
    let p = match cap.and_then(Capture::stop) {
        Ok(p) => p,
        Err(why) => {
            ctx.r.not_shown("chat", first, &why);
            return;
        }
    };
    let hs = pcap::tcp_handshakes(&p, topo::CHAT_PORT);
    ctx.r.observe("chat-server.pcap: each client's connection opens with SYN, SYN-ACK (ack = client ISN + 1), ACK (Q3, Q4)");
    // One connection per client, in the order they joined.
    let from: Vec<IpAddr> = hs.iter().map(|h| h.client.ip()).collect();
    let want: Vec<IpAddr> = ["client1", "client2", "client3"]
        .iter()
        .map(|h| IpAddr::V4(site.addr(h)))
        .collect();
    ctx.r.check(
        "chat",
        first,
        ok_if(
            from == want,
            format!(
                "{} complete handshakes to :5000, one from each client, client1's first",
                hs.len()
            ),
            format!("handshakes from {from:?}, want one from each of {want:?}"),
        ),
    );
}

/// Milestone 4 on carol's capture: the P2P datagram and its 8-byte UDP header.
fn check_p2p_datagram(ctx: &mut Ctx, site: &Site, cap: Result<Capture>) {
    let header = "the P2P datagram's UDP header: 4 fields of 2 bytes";
    let p = match cap.and_then(Capture::stop) {
        Ok(p) => p,
        Err(why) => {
            ctx.r.not_shown("chat", header, &why);
            return;
        }
    };
    ctx.r
        .observe("client3.pcap: the P2P datagram has the 4-field, 8-byte UDP header (Q7, Q8)");
    // Exactly the one P2P message, from bob's host, its Length field = 8-byte header +
    // payload (Q9).
    let bob = IpAddr::V4(site.addr("client2"));
    let p2p = pcap::udp_to(&p, Some(IpAddr::V4(site.addr("client3"))), topo::CHAT_PORT);
    let one = match p2p.as_slice() {
        [d] if d.src == bob && pcap::udp_has_no_seq(&p, topo::CHAT_PORT) => match &d.transport {
            pcap::Transport::Udp {
                length, payload, ..
            } => Some((*length, payload.len())),
            _ => None,
        },
        _ => None,
    };
    ctx.r.check(
        "chat",
        header,
        match one {
            Some((length, payload)) => Ok(format!(
                "1 datagram from {bob}: source port, destination port, length, checksum in 8 bytes; Length {length} = 8 + {payload} bytes of text"
            )),
            None => Err(format!(
                "{} UDP datagrams to client3:5000 ({:?}), want exactly bob's one",
                p2p.len(),
                p2p.iter().map(|d| d.src).collect::<Vec<_>>()
            )),
        },
    );
}
