"""SQLite with django-prometheus's query metrics (`django_db_*`), counted the same way for less.

django-prometheus's SQLite backend makes a new cursor class for every cursor and looks its
label values up on every query; here the class and the labelled series are made once per
database alias. Same series, same names and labels, same values: statements, executemany
batches, durations, errors by exception type, new connections and their failures.
"""
