"""Sans-IO consensus state machines: PoET timers, DPoS election, PBFT agreement."""
