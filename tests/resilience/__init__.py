"""Fault tests under load with real processes (issue 12): crashes, outages, restarts, SIGTERM."""
