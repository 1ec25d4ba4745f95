//! VRRPv3 advertisements (to be written).
