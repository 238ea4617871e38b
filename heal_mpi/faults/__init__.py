"""Faults: the event kinds of `[faults]` (events.py) and the schedule that applies them round by round (schedule.py)."""
