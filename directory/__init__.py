"""People and groups read from LDAP/Active Directory, linked to database accounts."""
