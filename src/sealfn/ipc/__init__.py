"""Gateway-instance IPC: versioned frames over a socket pair, big tensors in shared memory."""
