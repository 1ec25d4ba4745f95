//! Gratuitous ARP and unsolicited neighbour advertisements (to be written).
