"""Identity: subjects (residents, enterprises), identifier validation, pseudonymous subject
ids."""
