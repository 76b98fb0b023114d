"""The meaning: the circuit, the unfolded DAG, BPTT by reverse traversal, and the reference interpreter."""
