"""Health: medical credit: enrolment and limits, visits and charges, the insurance share,
deferred bills, settlement and defaults."""
