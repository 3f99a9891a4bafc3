"""Pure mechanism math and sans-IO protocol state machines: no simpy, no mesa, no I/O."""
