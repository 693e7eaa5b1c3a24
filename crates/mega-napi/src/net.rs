//! Broadcast fan-out: one frame written to many TCP sockets in one addon call, `send(2)` per
//! socket in a tight loop. A broadcast through Node's streams costs a `Writable.write`, a write
//! request object and a `uv_try_write` per connection; here each connection costs the syscall
//! alone. @mega/ws calls it only for sockets Node has nothing queued for (plain TCP, not corked,
//! not ending), so bytes written here cannot overtake bytes Node holds; whatever is not written
//! (a full socket buffer, an error) is reported back and the caller hands it to `socket.write`,
//! which then runs Node's usual backpressure and error paths. Linux only (MSG_NOSIGNAL; the
//! descriptor of a Node socket is read from its libuv handle): elsewhere the export is absent and
//! @mega/ws writes through Node.
#![cfg(target_os = "linux")]

use napi_derive::napi;

use super::{invalid_arg, Result, Writable};

/// Writes `frame` to the first `count` descriptors of `fds`, never blocking. Returns how many
/// sockets did not take the whole frame; for each, `out` gets the pair (index in `fds`, bytes
/// written: 0 after an error or a full buffer, less than the frame after a partial write).
/// `out` must hold `2 * count` entries.
#[napi]
pub fn send_to_many(
    frame: &[u8],
    mut fds: Writable<u32>,
    count: u32,
    mut out: Writable<u32>,
) -> Result<u32> {
    let n = count as usize;
    let fds = fds.slice();
    let out = out.slice();
    if n > fds.len() || out.len() < 2 * n {
        return Err(invalid_arg(
            "sendToMany: count exceeds fds, or out is shorter than 2 * count",
        ));
    }
    let mut failed = 0usize;
    for (i, &fd) in fds[..n].iter().enumerate() {
        let sent = send_all(fd as i32, frame);
        if sent < frame.len() {
            out[2 * failed] = i as u32;
            out[2 * failed + 1] = sent as u32;
            failed += 1;
        }
    }
    Ok(failed as u32)
}

/// Bytes of `buf` the socket took before it would block or failed (EINTR is retried).
fn send_all(fd: i32, buf: &[u8]) -> usize {
    let mut off = 0;
    while off < buf.len() {
        let rest = &buf[off..];
        // SAFETY: `rest` is a live slice for the duration of the call; MSG_DONTWAIT keeps a
        // blocking descriptor from stalling the event loop, MSG_NOSIGNAL turns SIGPIPE into EPIPE.
        // The raw syscall skips libc's `send` wrapper, a thread-cancellation point that costs
        // two extra calls per socket (Node's threads are never cancelled).
        let r = unsafe {
            // Every argument as a full register (the kernel reads longs).
            libc::syscall(
                libc::SYS_sendto,
                fd as libc::c_long,
                rest.as_ptr(),
                rest.len(),
                (libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) as libc::c_long,
                std::ptr::null::<libc::sockaddr>(),
                0 as libc::c_long,
            )
        };
        if r > 0 {
            off += r as usize;
        } else if r < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        } else {
            break;
        }
    }
    off
}
