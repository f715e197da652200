"""Running a protocol: its steps, records, outcome, budget, the protocol files and schedules."""
