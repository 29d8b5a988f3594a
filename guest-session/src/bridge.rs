//! The connection to `pvmouse-guestd`'s session socket: the newest layout is sent on every
//! change and again after every reconnect, so a bridge that restarts gets the layout back
//! without the display server having to change anything.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::Duration;

use pvmouse_spec::session::{Reply, SessionLayout};

/// How often a missing bridge is looked for.
const RETRY: Duration = Duration::from_secs(1);

/// The exit status when the bridge refuses this user: retrying would not help.
pub const EXIT_REFUSED: u8 = 3;

#[derive(Debug)]
pub enum Event {
    Layout(SessionLayout),
    /// The bridge predates exact scales: it refused the field.
    NoScales,
    /// The connection the reader thread was on has closed.
    Lost,
}

/// The line that tells the bridge `layout`, without the outputs' exact scales if it cannot
/// take them.
fn encode(layout: &SessionLayout, scales: bool) -> serde_json::Result<Vec<u8>> {
    let mut line = if scales {
        serde_json::to_vec(layout)?
    } else {
        let mut plain = layout.clone();
        for o in &mut plain.outputs {
            o.scale = None;
        }
        serde_json::to_vec(&plain)?
    };
    line.push(b'\n');
    Ok(line)
}

/// Runs until every sender is gone. Blocks on the channel while connected, and retries once a
/// second while not, so an agent with a bridge costs nothing between layout changes.
pub fn run(socket: PathBuf, rx: Receiver<Event>, tx: Sender<Event>) {
    let mut current: Option<Vec<u8>> = None;
    let mut layout: Option<SessionLayout> = None;
    let mut scales = true;
    let mut conn: Option<UnixStream> = None;
    let mut told_missing = false;
    loop {
        let event = if conn.is_some() {
            rx.recv().map_err(|_| RecvTimeoutError::Disconnected)
        } else {
            rx.recv_timeout(RETRY)
        };
        let mut send_now = false;
        match event {
            Ok(Event::Layout(new)) => {
                let line = match encode(&new, scales) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!("cannot encode the layout: {e}");
                        continue;
                    }
                };
                if current.as_ref() == Some(&line) {
                    continue;
                }
                tracing::info!(outputs = new.outputs.len(), mode = ?new.mode, "layout changed");
                current = Some(line);
                layout = Some(new);
                send_now = true;
            }
            Ok(Event::NoScales) if scales => {
                tracing::warn!(
                    "the bridge predates exact scales; sending the layout without them, so \
                     pointers on fractionally scaled outputs may land a pixel short"
                );
                scales = false;
                current = layout.as_ref().and_then(|l| encode(l, false).ok());
                send_now = true;
            }
            Ok(Event::NoScales) => {}
            Ok(Event::Lost) => {
                tracing::warn!("the bridge closed the connection; reconnecting");
                conn = None;
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        if conn.is_none() {
            match UnixStream::connect(&socket) {
                Ok(stream) => {
                    tracing::info!(socket = %socket.display(), "connected to the bridge");
                    told_missing = false;
                    match stream.try_clone() {
                        Ok(read) => {
                            let tx = tx.clone();
                            std::thread::spawn(move || read_replies(read, tx));
                            conn = Some(stream);
                            send_now = true;
                        }
                        Err(e) => tracing::warn!("cannot use the connection: {e}"),
                    }
                }
                Err(e) => {
                    if !told_missing {
                        tracing::warn!(
                            socket = %socket.display(),
                            "no bridge to tell ({e}); retrying every {} s", RETRY.as_secs()
                        );
                        told_missing = true;
                    }
                }
            }
        }
        if let (true, Some(stream), Some(line)) = (send_now, conn.as_mut(), current.as_ref())
            && let Err(e) = stream.write_all(line)
        {
            tracing::warn!("cannot send the layout: {e}; reconnecting");
            conn = None;
        }
    }
}

/// Logs the bridge's answers; a refusal ends the agent, since no retry can change it.
fn read_replies(stream: UnixStream, tx: Sender<Event>) {
    for line in BufReader::new(stream).lines() {
        let Ok(line) = line else { break };
        match serde_json::from_str::<Reply>(&line) {
            Ok(Reply::Applied { displays, mode }) => {
                tracing::info!(?displays, ?mode, "the bridge applied the layout");
            }
            Ok(Reply::Error(why)) if why.contains("unknown field `scale`") => {
                let _ = tx.send(Event::NoScales);
            }
            Ok(Reply::Error(why)) => tracing::error!("the bridge did not apply the layout: {why}"),
            Ok(Reply::Refused(why)) => {
                tracing::error!("the bridge refused this agent: {why}");
                eprintln!("pvmouse-session: refused by pvmouse-guestd: {why}");
                std::process::exit(i32::from(EXIT_REFUSED));
            }
            Err(e) => tracing::warn!("unreadable answer from the bridge: {e}"),
        }
    }
    let _ = tx.send(Event::Lost);
}
