"""Persistence behind small interfaces: SQLite by default, heavier engines when outgrown.

Modules are imported by path (``hftkit.storage.signals_sqlite``) so that importing the
package never pulls in an optional engine's client library.
"""
