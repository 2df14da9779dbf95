"""`parkmate replay`: a real day of Birmingham's car parks driven through Parkmate.

Rooms: `data.py` (parse, clean and bin the UCI "Parking Birmingham" readings; no I/O
beyond reading the CSV text it is given), `plan.py` (the traffic plan: which car
arrives and leaves when, deterministic by seed; no I/O), `simulation.py` (drivers and
lot owners on the public HTTP API and WebSocket), `report.py` (figures, percentiles,
the PNG plot) and `runner.py` (wiring, the progress bar).
"""
