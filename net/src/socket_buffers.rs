//! The kernel's buffers of a UDP socket: how many bytes of datagrams may wait in it.
//!
//! Linux gives a socket `net.core.rmem_default` (about 208 KiB) to receive into, which holds
//! three datagrams of 64 KiB. A follower sent a stream of AppendEntries of 60 KiB values, or a
//! leader that 64 clients send 60 KiB writes at once, overflows it: the kernel drops the rest
//! (counted in `/proc/net/snmp` as `RcvbufErrors`), and Raft sees a lossy network: streams
//! presumed lost and probed again at the next heartbeat, heartbeats lost with them, elections.
//! Measured before this module (`cargo bench -p balsa-benches --bench scale`, 64 clients of
//! 60 KiB values): about 150 writes/s, p99 over 2 s, five elections in eight seconds.
//!
//! So every socket a node or a client binds asks for [`SOCKET_BUFFER_BYTES`] each way, as
//! QUIC stacks and etcd's peers (over TCP, whose buffers grow by themselves) effectively have.
//! The kernel caps the request at `net.core.rmem_max` / `wmem_max` (4 MiB on many distributions,
//! 208 KiB on some): [`grow`] reports what the socket got, and the caller logs a short answer
//! once, naming the sysctl to raise. Nothing is forced past the administrator's limit
//! (`SO_RCVBUFFORCE` is not used).
//!
//! The memory is the kernel's, charged only while datagrams wait: an idle socket costs nothing.
//!
//! `std` offers no call for these two options and the crate takes no dependency for them, so
//! this file declares `setsockopt`/`getsockopt` from the C library std already links, on
//! Linux only (elsewhere [`grow`] does nothing and says so).

use std::io;
use std::net::UdpSocket;

/// The bytes each socket asks for, to receive and to send: 64 datagrams of 64 KiB, one
/// leader's whole window of AppendEntries (`max_inflight_messages`) to one follower.
pub const SOCKET_BUFFER_BYTES: usize = 4 << 20;

/// What a socket got, in the bytes `getsockopt` reports (Linux reports twice what was set,
/// the other half being its bookkeeping).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BufferSizes {
    /// The receive buffer.
    pub receive: usize,
    /// The send buffer.
    pub send: usize,
}

impl BufferSizes {
    /// Whether both buffers hold at least `bytes` of datagrams.
    #[must_use]
    pub fn hold(&self, bytes: usize) -> bool {
        self.receive >= bytes && self.send >= bytes
    }
}

/// Asks for `bytes` of receive and send buffer on `socket`, and returns what it got.
///
/// # Errors
/// The `setsockopt` or `getsockopt` error (never for a UDP socket and a positive size in
/// practice); on systems other than Linux, [`io::ErrorKind::Unsupported`].
pub fn grow(socket: &UdpSocket, bytes: usize) -> io::Result<BufferSizes> {
    imp::grow(socket, bytes)
}

#[cfg(target_os = "linux")]
mod imp {
    use std::ffi::{c_int, c_void};
    use std::io;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;

    use super::BufferSizes;

    /// `<sys/socket.h>` on Linux: the values every architecture but alpha, mips, parisc and
    /// sparc uses, which Balsa does not build for.
    const SOL_SOCKET: c_int = 1;
    const SO_SNDBUF: c_int = 7;
    const SO_RCVBUF: c_int = 8;

    #[allow(
        unsafe_code,
        reason = "the C library's two calls, which std links but does not wrap"
    )]
    unsafe extern "C" {
        fn setsockopt(
            fd: c_int,
            level: c_int,
            name: c_int,
            value: *const c_void,
            len: u32,
        ) -> c_int;
        fn getsockopt(
            fd: c_int,
            level: c_int,
            name: c_int,
            value: *mut c_void,
            len: *mut u32,
        ) -> c_int;
    }

    #[cfg(not(any(
        target_arch = "x86_64",
        target_arch = "x86",
        target_arch = "aarch64",
        target_arch = "arm",
        target_arch = "riscv64",
        target_arch = "powerpc64",
        target_arch = "s390x",
        target_arch = "loongarch64"
    )))]
    compile_error!("socket_buffers.rs knows SOL_SOCKET/SO_RCVBUF of the generic Linux ABI only");

    pub(super) fn grow(socket: &UdpSocket, bytes: usize) -> io::Result<BufferSizes> {
        let fd = socket.as_raw_fd();
        let wanted = c_int::try_from(bytes).unwrap_or(c_int::MAX);
        set(fd, SO_RCVBUF, wanted)?;
        set(fd, SO_SNDBUF, wanted)?;
        Ok(BufferSizes {
            receive: get(fd, SO_RCVBUF)?,
            send: get(fd, SO_SNDBUF)?,
        })
    }

    #[allow(
        unsafe_code,
        reason = "std has no call for SO_RCVBUF/SO_SNDBUF; 60 KiB datagrams overflow the default"
    )]
    fn set(fd: c_int, name: c_int, value: c_int) -> io::Result<()> {
        let len = u32::try_from(size_of::<c_int>()).unwrap_or(4);
        // SAFETY: `fd` is a socket the caller's `&UdpSocket` keeps open for the call; `value`
        // lives on this stack frame for the call, and `len` is its exact size, so the kernel
        // reads only those bytes.
        let result = unsafe { setsockopt(fd, SOL_SOCKET, name, (&raw const value).cast(), len) };
        if result == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    #[allow(
        unsafe_code,
        reason = "std has no call for SO_RCVBUF/SO_SNDBUF; reading back what the kernel granted"
    )]
    fn get(fd: c_int, name: c_int) -> io::Result<usize> {
        let mut value: c_int = 0;
        let mut len = u32::try_from(size_of::<c_int>()).unwrap_or(4);
        // SAFETY: `fd` is open as above; `value` and `len` live on this frame for the call,
        // and `len` says the kernel may write at most `value`'s size into it.
        let result =
            unsafe { getsockopt(fd, SOL_SOCKET, name, (&raw mut value).cast(), &raw mut len) };
        if result == 0 {
            Ok(usize::try_from(value).unwrap_or(0))
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use std::io;
    use std::net::UdpSocket;

    use super::BufferSizes;

    pub(super) fn grow(_socket: &UdpSocket, _bytes: usize) -> io::Result<BufferSizes> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "socket buffer sizes are set on Linux only",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The administrator's cap on one direction, from procfs.
    fn cap(name: &str) -> usize {
        std::fs::read_to_string(format!("/proc/sys/net/core/{name}"))
            .expect("procfs")
            .trim()
            .parse()
            .expect("a number")
    }

    #[test]
    fn a_socket_gets_what_it_asks_for_up_to_the_system_cap_and_reports_it() {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let small = grow(&socket, 4096).expect("set a small size");
        let wanted = 1 << 20;
        let got = grow(&socket, wanted).expect("set a larger size");
        assert!(got.receive > small.receive, "{small:?} -> {got:?}");
        assert!(got.send > small.send, "{small:?} -> {got:?}");
        assert!(got.receive >= wanted.min(cap("rmem_max")), "{got:?}");
        assert!(got.send >= wanted.min(cap("wmem_max")), "{got:?}");
    }
}
