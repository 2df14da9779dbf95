"""One async function per request or event the bookings service handles, one module per
subject group: `bookings.lot.*` and `bookings.slot.*` in lots.py, `bookings.booking.*` in
bookings.py, `bookings.staff.*` in staff.py, `bookings.vehicle.*` in vehicles.py,
`bookings.payment.*` in payments.py, `bookings.carwash.*` in carwash.py and
`timers.fired.booking.>` in timers.py.

Handlers do the I/O (one transaction per change: state plus its events in the outbox)
and ask `domain` and `policy` for every decision; they raise DomainError for the caller.
"""
