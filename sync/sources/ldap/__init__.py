"""The LDAP source: Active Directory and OpenLDAP, read with python-ldap, always paged.

connection.py  binds, pages, and turns LDAP errors into sentences an IT admin understands
profiles.py    what the AD and OpenLDAP profiles fill in, and the settings a source may set
reader.py      entries -> unit and person records (keyed on objectGUID / entryUUID, never DN)
vault.py       the bind password, encrypted at rest
operations.py  add, list, test and sync a stored source
"""
