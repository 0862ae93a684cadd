"""The CRM side's central database (PostgreSQL, or SQLite for one instance): the tables the
bridge fills and the CRM team reads. All of the bridge's SQL lives here."""
