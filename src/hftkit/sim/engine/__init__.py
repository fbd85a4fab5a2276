"""The venue-neutral core of the simulator: matching, accounts, market drivers, faults."""
