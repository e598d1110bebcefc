"""Gateway-instance IPC: versioned frames over a socket pair, large tensors through shared memory."""
