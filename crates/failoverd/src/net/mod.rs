//! Thin I/O for takeover: raw VRRP sockets, rtnetlink, ARP/NA senders (to be written).
