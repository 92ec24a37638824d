"""Contact fields: the contact, its normalisers, column mapping and the built-in field validators."""
