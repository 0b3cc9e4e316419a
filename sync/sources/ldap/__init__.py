"""The LDAP source: Active Directory and OpenLDAP, read with python-ldap, always paged.

connection.py  binds, pages, and turns LDAP errors into sentences an IT admin understands
profiles.py    what the AD and OpenLDAP profiles fill in, and the settings a source may set
reader.py      entries -> unit and person records (keyed on objectGUID / entryUUID, never DN)
dns.py         DNs compared whatever their spelling; parents and the nearest OU above
spelling.py    mapped attribute names as the server spells them; how the report names them
groups.py      group members read whole across AD's range limit (the member-of restriction)
reach.py       what a source may reach on the server: CA files and LDAP hosts
vault.py       the bind password, encrypted at rest
operations.py  add, list, test and sync a stored source
declared.py    sources declared in the config file, applied to the database
"""
