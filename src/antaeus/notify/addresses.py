"""Where a webhook may point, and how a webhook URL is shown.

A webhook URL is chosen by any token holder, and the deliveries list shows
what each try met: pointed inside the network, webhooks would be a port
scanner. So a URL whose host is a local or private address is refused when it
is registered, and every address a host name resolves to is checked again
when a delivery connects (against DNS rebinding), unless
`ANTAEUS_WEBHOOK_ALLOW_PRIVATE=true` (development, compose networks, tests).

The ranges are listed here explicitly, not taken from `ipaddress`'s
`is_private` (which is another list, and changes between Python versions).
A host is read as an address the way a browser's URL parser and the C
resolver read it: `2130706433`, `0x7f.1`, `0177.0.0.1` and `127.1` are all
127.0.0.1; IPv6 zone ids are dropped; IPv4 addresses carried inside IPv6 ones
(mapped, translated, NAT64, 6to4, Teredo) are checked as the IPv4 address.

A webhook URL may carry a secret in its path or query (Slack-style URLs,
`?token=`): logs and stored delivery errors name a destination by its
`origin` (scheme, host, port) only; `redact` takes a URL out of a message.
"""

from __future__ import annotations

import re
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Final
from urllib.parse import quote, unquote, urlsplit

from yarl import URL

Address = IPv4Address | IPv6Address

ALLOW_SETTING: Final = "ANTAEUS_WEBHOOK_ALLOW_PRIVATE"

#: (range, what it is); an address in any of them is not a webhook receiver
PRIVATE_V4: Final[tuple[tuple[IPv4Network, str], ...]] = tuple(
    (IPv4Network(net), why)
    for net, why in (
        ("0.0.0.0/8", "this network (0.0.0.0 reaches this host)"),
        ("127.0.0.0/8", "loopback"),
        ("10.0.0.0/8", "private (RFC 1918)"),
        ("172.16.0.0/12", "private (RFC 1918)"),
        ("192.168.0.0/16", "private (RFC 1918)"),
        ("100.64.0.0/10", "shared address space (carrier-grade NAT)"),
        ("169.254.0.0/16", "link-local (cloud metadata)"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved (and broadcast)"),
    )
)
PRIVATE_V6: Final[tuple[tuple[IPv6Network, str], ...]] = tuple(
    (IPv6Network(net), why)
    for net, why in (
        ("::/128", "unspecified (reaches this host)"),
        ("::1/128", "loopback"),
        ("::/96", "IPv4-compatible (deprecated)"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local (deprecated)"),
        ("fc00::/7", "unique local"),
        ("ff00::/8", "multicast"),
        ("64:ff9b:1::/48", "local-use NAT64"),
    )
)
_MAPPED = IPv6Network("::ffff:0:0/96")  # IPv4-mapped: the kernel connects to the IPv4 address
_TRANSLATED = IPv6Network("::ffff:0:0:0/96")  # IPv4-translated (SIIT)
_NAT64 = IPv6Network("64:ff9b::/96")  # well-known NAT64 prefix: the last 32 bits
_6TO4 = IPv6Network("2002::/16")  # 6to4: bits 16..48

LOCAL_NAMES: Final = frozenset(
    {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}
)

_HEX_PART = re.compile(r"0x[0-9a-f]*")


def private_reason(address: Address) -> str | None:
    """What private or local range `address` is in (None: a public address)."""
    if isinstance(address, IPv4Address):
        for v4net, why in PRIVATE_V4:
            if address in v4net:
                return f"{why}, {v4net}"
        return None
    for v6net, why in PRIVATE_V6:
        if address in v6net:
            return f"{why}, {v6net}"
    inner: IPv4Address | None = None
    if address in _MAPPED or address in _TRANSLATED or address in _NAT64:
        inner = IPv4Address(int(address) & 0xFFFFFFFF)
    elif address in _6TO4:
        inner = address.sixtofour
    elif address.teredo is not None:
        inner = address.teredo[1]  # the client's own address
    if inner is not None and (inner_why := private_reason(inner)) is not None:
        return f"{inner_why}: {inner} inside an IPv6 address"
    return None


def _ipv4_number(part: str) -> int:
    """One part of an IPv4 address in the resolver's spellings: 0x.. hex, 0.. octal, decimal."""
    if _HEX_PART.fullmatch(part):
        return int(part[2:] or "0", 16)
    if not part.isascii() or not part.isdigit():
        raise ValueError(f"{part!r} is not a number")
    if len(part) > 1 and part.startswith("0"):
        return int(part, 8)  # ValueError on 8 or 9
    return int(part)


def parse_ipv4(host: str) -> IPv4Address:
    """`host` as inet_aton and the WHATWG URL parser read it (one to four parts)."""
    parts = host.split(".")
    if not 1 <= len(parts) <= 4 or any(not p for p in parts):
        raise ValueError(f"{host!r} is not an IPv4 address")
    numbers = [_ipv4_number(p) for p in parts]
    *first, last = numbers
    if any(n > 255 for n in first) or last >= 256 ** (5 - len(numbers)):
        raise ValueError(f"{host!r} is not an IPv4 address (a part is too large)")
    value = last
    for i, n in enumerate(first):
        value |= n << (8 * (3 - i))
    return IPv4Address(value)


def _ends_in_a_number(host: str) -> bool:
    last = host.rsplit(".", 1)[-1]
    return bool(last) and ((last.isascii() and last.isdigit()) or bool(_HEX_PART.fullmatch(last)))


def host_address(host: str) -> Address | None:
    """The address `host` (as in a URL) names literally, in any spelling; None: a name.

    Raises ValueError for a host that looks like an address and is not one.
    """
    h = host.strip().lower()
    if h.startswith("[") and h.endswith("]"):
        h = h[1:-1]
    if ":" in h:
        return IPv6Address(unquote(h).split("%", 1)[0])  # an IPv6 zone id names an interface
    h = h.removesuffix(".")
    if _ends_in_a_number(h):
        return parse_ipv4(h)
    return None


def is_local_name(host: str) -> bool:
    """`localhost` and its kin (RFC 6761: every name under `.localhost`), trailing dot or not."""
    name = host.strip().lower().removesuffix(".")
    return name in LOCAL_NAMES or name.endswith(".localhost")


def _hosts(url: str) -> list[str]:
    """The URL's host as the delivering client (yarl) and as the stdlib read it."""
    found: list[str] = []
    try:
        parsed = URL(url)
        found += [h for h in (parsed.raw_host, parsed.host) if h]
    except (ValueError, TypeError):
        pass
    try:
        if (name := urlsplit(url).hostname) is not None:
            found.append(name)
    except ValueError:
        pass
    return list(dict.fromkeys(found))


def url_problem(url: str, allow_private: bool) -> str | None:
    """Why a webhook may not point at `url`'s host, said for people (None: it may).

    Only what the URL itself says: a name is resolved and checked at delivery.
    """
    hosts = _hosts(url)
    if not hosts:
        return "must name a host"
    for host in hosts:
        if ":" in host and "%" in host and not allow_private:
            return f"the host {host!r} has an IPv6 zone id: it names a local network interface"
        try:
            address = host_address(host)
        except ValueError:
            return f"the host {host!r} is neither a name nor an IP address"
        if address is None:
            if "%" in host:
                return f"the host {host!r} is not a valid name"
            if is_local_name(host) and not allow_private:
                return (
                    f"{host!r} names this machine; webhooks may not point at local or private "
                    f"addresses ({ALLOW_SETTING}=true allows them)"
                )
            continue
        why = private_reason(address)
        if why is not None and not allow_private:
            return (
                f"points at {address}, a local or private address ({why}); webhooks may "
                f"not point inside the network ({ALLOW_SETTING}=true allows it)"
            )
        bare = host.strip("[]").lower()
        if isinstance(address, IPv4Address) and bare not in (str(address), f"{address}."):
            return f"write the IP address as {address}, not {host!r}"
    return None


def origin(url: str) -> str:
    """`scheme://host:port` of `url`: how logs and stored errors name a destination."""
    try:
        parsed = URL(url)
        host = parsed.raw_host or ""
        port = parsed.port
    except (ValueError, TypeError):
        return "(an unreadable URL)"
    if ":" in host:
        host = f"[{host}]"
    return f"{parsed.scheme}://{host}" + (f":{port}" if port is not None else "")


def _forms(text: str) -> set[str]:
    return {text, unquote(text), quote(unquote(text), safe="/:@!$&'()*+,;=-._~")}


def redact(text: str, url: str, min_secret: int = 6) -> str:
    """`text` (an error message) with `url` shown only as its origin.

    Every spelling of the whole URL becomes its origin; every copy of its path
    and query is cut; and each path segment, query value, fragment and user
    info of at least `min_secret` characters is masked wherever it still is.
    """
    shown = origin(url)
    try:
        parsed = URL(url)
        spellings = {url, str(parsed), parsed.human_repr()}
        tails = [
            parsed.raw_path_qs + (f"#{parsed.raw_fragment}" if parsed.raw_fragment else ""),
            parsed.raw_path_qs,
            parsed.raw_path,
        ]
        pieces = [*parsed.raw_path.split("/"), parsed.raw_fragment, parsed.raw_user or ""]
        pieces += [parsed.raw_password or ""]
        pieces += [value for _key, value in parsed.query.items()]
    except (ValueError, TypeError):
        spellings, tails, pieces = {url}, [], []
    for spelling in sorted(spellings, key=len, reverse=True):
        text = text.replace(spelling, shown)
    cut = {form for tail in tails if tail not in ("", "/") for form in _forms(tail)}
    for form in sorted(cut, key=len, reverse=True):
        text = text.replace(form, "/***")
    for piece in sorted({p for p in pieces if p}, key=len, reverse=True):
        for form in sorted(_forms(piece), key=len, reverse=True):
            if len(form) >= min_secret:
                text = text.replace(form, "***")
    return text
