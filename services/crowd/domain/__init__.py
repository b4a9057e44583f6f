"""Crowd's pure rules and models: a zone's configuration (zones), its sensors and fused occupancy
(occupancy), the response level (levels), its history and forecast. No I/O, no framework, no
contract: the app loads and stores their state, contract.py maps them to the protobuf messages."""
