//! Bringing an interface up, with an optional IPv4 address, through the
//! classic interface ioctls (SIOCSIFADDR, SIOCSIFNETMASK, SIOCSIFFLAGS).
//!
//! That is all a guest on a fixed virtual network needs: no DHCP, no routes
//! (the host reaches the guest from the same subnet), no name resolution.
//! These ioctls have no safe wrapper in `nix`, hence the unsafe blocks.

#![expect(unsafe_code, reason = "interface ioctls with a libc::ifreq, each block with its SAFETY comment")]

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};

/// Brings `interface` up, first setting `address/prefix` when given.
pub fn bring_up(interface: &str, address: Option<(Ipv4Addr, u8)>) -> std::io::Result<()> {
    let name = interface.as_bytes();
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains(&0) {
        return Err(std::io::Error::other(format!("invalid interface name {interface:?}")));
    }
    // SAFETY: socket(2) with constant arguments; the result is checked
    // before it is wrapped, and the OwnedFd closes it.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh, valid descriptor that nothing else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    let request = || {
        // SAFETY: ifreq is plain data (arrays, integers and a union of them); all zeroes is a valid value.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        for (dst, src) in req.ifr_name.iter_mut().zip(name) {
            *dst = *src as libc::c_char;
        }
        req
    };
    let ioctl = |op: libc::Ioctl, req: &mut libc::ifreq| -> std::io::Result<()> {
        // SAFETY: the SIOC*IF* requests read or write one ifreq, which
        // `req` points to for the duration of the call.
        if unsafe { libc::ioctl(socket.as_raw_fd(), op, req as *mut libc::ifreq) } < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(())
        }
    };
    if let Some((address, prefix)) = address {
        let sockaddr = |ip: Ipv4Addr| {
            // SAFETY: sockaddr_in is plain data; all zeroes is valid.
            let mut sin: libc::sockaddr_in = unsafe { std::mem::zeroed() };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_addr.s_addr = u32::from(ip).to_be();
            // SAFETY: sockaddr_in (16 bytes) and sockaddr (16 bytes) have the
            // same size; the kernel reads it as a sockaddr_in for AF_INET.
            unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) }
        };
        let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(prefix.min(32))) };
        let mut req = request();
        req.ifr_ifru.ifru_addr = sockaddr(address);
        ioctl(libc::SIOCSIFADDR, &mut req)?;
        let mut req = request();
        req.ifr_ifru.ifru_netmask = sockaddr(Ipv4Addr::from(mask));
        ioctl(libc::SIOCSIFNETMASK, &mut req)?;
    }
    let mut req = request();
    ioctl(libc::SIOCGIFFLAGS, &mut req)?;
    // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    req.ifr_ifru.ifru_flags = flags | (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    ioctl(libc::SIOCSIFFLAGS, &mut req)
}
