//! The jamisim reference Jami node (identity, DHT, connections, swarm, calls).
