"""The serverless runtime: pure scaling, routing and batching decisions, and loops around them."""
