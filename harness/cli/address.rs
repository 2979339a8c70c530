//! The addresses the command line takes: `--listen`, `--api`, `--upstream`, a probe's server and
//! a bench target all read the same forms, so what works for one works for every other.
//!
//! Accepted: an address literal (`127.0.0.1:2525`, `[::1]:2525`), `localhost:PORT`, and a bare
//! `PORT`. The last two mean 127.0.0.1, decided here without asking a resolver: a name that
//! resolves differently on another machine (to `::1` first, say) would make the same command
//! line listen somewhere else. Where the harness connects (`--upstream`, a probe's server) any
//! other host name is resolved as well, once, while the arguments are read: that is before the
//! runtime starts, so no runtime worker ever waits on a resolver.

use std::net::{Ipv4Addr, SocketAddr, ToSocketAddrs};

/// The forms an address takes, for error messages.
const FORMS: &str = "write IP:PORT (127.0.0.1:2525, [::1]:2525), localhost:PORT, or a bare PORT (meaning 127.0.0.1:PORT)";

/// An address to listen on: a literal, `localhost:PORT` or a bare `PORT`. Host names other
/// than `localhost` are refused: a listener binds one address, and a name may stand for several.
pub fn listen(s: &str) -> Result<SocketAddr, String> {
    match loopback_shorthand(s)? {
        Some(addr) => Ok(addr),
        None => s
            .parse::<SocketAddr>()
            .map_err(|_| format!("{s:?} is not an address to listen on; {FORMS}")),
    }
}

/// An address to connect to: as [`listen`], plus any `HOST:PORT` the system resolves (its first
/// address).
pub fn connect(s: &str) -> Result<SocketAddr, String> {
    if let Some(addr) = loopback_shorthand(s)? {
        return Ok(addr);
    }
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if !s.contains(':') {
        return Err(format!("{s:?} is not HOST:PORT: it has no port; {FORMS}"));
    }
    s.to_socket_addrs()
        .map_err(|e| format!("{s:?} is not HOST:PORT ({e}); {FORMS}"))?
        .next()
        .ok_or_else(|| format!("{s:?} resolves to no address"))
}

/// `PORT` and `localhost:PORT` as 127.0.0.1:PORT; `None` for anything else. A port out of
/// range is an error here (not "not an address") so the message says what is wrong with it.
fn loopback_shorthand(s: &str) -> Result<Option<SocketAddr>, String> {
    let port = match s.rsplit_once(':') {
        Some((host, port)) if host.eq_ignore_ascii_case("localhost") => port,
        None if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => s,
        _ => return Ok(None),
    };
    port.parse::<u16>()
        .map(|port| Some(SocketAddr::from((Ipv4Addr::LOCALHOST, port))))
        .map_err(|_| format!("{s:?}: the port must be a number from 0 to 65535; {FORMS}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shorthands_mean_ipv4_loopback() {
        assert_eq!(listen("2525").unwrap(), "127.0.0.1:2525".parse().unwrap());
        assert_eq!(listen("0").unwrap(), "127.0.0.1:0".parse().unwrap());
        assert_eq!(
            listen("localhost:0").unwrap(),
            "127.0.0.1:0".parse().unwrap()
        );
        assert_eq!(
            listen("LOCALHOST:25").unwrap(),
            "127.0.0.1:25".parse().unwrap()
        );
        assert_eq!(listen("[::1]:2525").unwrap(), "[::1]:2525".parse().unwrap());
        assert_eq!(
            connect("localhost:2547").unwrap(),
            "127.0.0.1:2547".parse().unwrap()
        );
        assert_eq!(connect("2547").unwrap(), "127.0.0.1:2547".parse().unwrap());
    }

    #[test]
    fn bad_addresses_say_what_to_write() {
        for bad in [
            "",
            "localhost",
            "65536",
            "localhost:99999",
            "mx.example:25",
            "1.2.3.4",
            "[::1]",
        ] {
            let e = listen(bad).unwrap_err();
            assert!(e.contains(&format!("{bad:?}")), "{e}");
        }
        assert!(
            listen("mx.example:25")
                .unwrap_err()
                .contains("localhost:PORT")
        );
        assert!(connect("localhost").unwrap_err().contains("no port"));
        assert!(connect("65536").unwrap_err().contains("0 to 65535"));
    }
}
