"""What runs inside an instance (an enclave when sealed): boot, load models, serve batches."""
