"""govmesh: the shared runtime every service stands on."""
